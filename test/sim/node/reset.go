package node

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	cosistate "github.com/cosi-project/runtime/pkg/state"
	"github.com/google/uuid"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	etcdres "github.com/siderolabs/talos/pkg/machinery/resources/etcd"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// DefaultDrainTimeout is how long a graceful Reset's drain may take unless WithDrainTimeout says
// otherwise: Talos' pkg/kubernetes/kubernetes.go DrainTimeout.
const DefaultDrainTimeout = 5 * time.Minute

// WithDrainTimeout bounds the drain of a graceful Reset on this node; when it runs out the reset
// goes on, as Talos' CordonAndDrainNode task only logs its error.
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) { o.drainTimeout = d }
}

// The system volumes Reset may be told to wipe (Talos 1.11 looks each label up as a VolumeStatus).
var systemVolumes = []string{"STATE", "EPHEMERAL", "META", "EFI", "BOOT"}

// Reset is machined's (v1.11.5 internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go
// Reset): the request is checked, then the reset sequence runs in the background
// (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go Reset):
//
//	graceful: drain (cordon, then evict the Node's pods through the API server), cleanup
//	(removeAllPods); otherwise cleanup (stopAllPods); dbus; graceful on a control plane: leave
//	(LeaveEtcd, which fails the sequence when it fails); preReset; stopEverything; forceCleanup;
//	the wipe of the volumes named (resetSpec) or of the whole system disk (reset); then reboot,
//	or shutdown.
//
// A wiped STATE takes the machine config: the machine boots into maintenance mode. A wiped
// EPHEMERAL takes etcd's data. The Node object stays in Kubernetes (nothing deletes it); the
// kubelet is gone, so it turns NotReady after the node-monitor grace period (nodemonitor.go).
// os:admin only (authz.go).
func (n *Node) Reset(ctx context.Context, req *machine.ResetRequest) (*machine.ResetResponse, error) {
	if !n.configured() {
		return nil, errMaintenanceUnimplemented("Reset")
	}
	if len(req.GetUserDisksToWipe()) > 0 {
		if req.GetMode() == machine.ResetRequest_SYSTEM_DISK {
			return nil, errors.New("reset failed: invalid input, wipe mode SYSTEM_DISK doesn't support UserDisksToWipe parameter")
		}
		for _, dev := range req.GetUserDisksToWipe() {
			if dev == "/dev/sda" {
				return nil, fmt.Errorf("reset user disk failed: device %s is the system disk", dev)
			}
			return nil, fmt.Errorf("reset user disk failed: device %s wasn't found", dev)
		}
	}
	wipe := map[string]bool{}
	if len(req.GetSystemPartitionsToWipe()) > 0 {
		if req.GetMode() == machine.ResetRequest_USER_DISKS {
			return nil, errors.New("reset failed: invalid input, wipe mode USER_DISKS doesn't support SystemPartitionsToWipe parameter")
		}
		for _, spec := range req.GetSystemPartitionsToWipe() {
			if !slices.Contains(systemVolumes, spec.GetLabel()) {
				return nil, fmt.Errorf("failed to get volume status with label %q: resource VolumeStatuses.block.talos.dev(runtime/%s@undefined) doesn't exist", spec.GetLabel(), spec.GetLabel())
			}
			if spec.GetWipe() {
				wipe[spec.GetLabel()] = true
			}
		}
	} else if req.GetMode() != machine.ResetRequest_USER_DISKS {
		for _, label := range systemVolumes {
			wipe[label] = true // the whole system disk
		}
	}
	actorID := uuid.NewString()
	reply := &machine.ResetResponse{Messages: []*machine.Reset{{ActorId: actorID}}}
	if !n.lockSequence("reset") {
		return reply, nil // machined answers, then its sequencer refuses (a LOCKED noop event)
	}
	labels := slices.Sorted(func(yield func(string) bool) {
		for l := range wipe {
			if !yield(l) {
				return
			}
		}
	})
	n.trust.record(n.address.String(), TimelineReset, fmt.Sprintf("graceful=%v reboot=%v wipe=%s", req.GetGraceful(), req.GetReboot(), strings.Join(labels, ",")))
	go n.resetSequence(actorID, req.GetGraceful(), req.GetReboot(), len(req.GetSystemPartitionsToWipe()) > 0, wipe)
	return reply, nil
}

// resetSequence runs the reset sequence's phases, each with its task events.
func (n *Node) resetSequence(actorID string, graceful, reboot, spec bool, wipe map[string]bool) {
	time.Sleep(sequenceStart)
	ctx := context.Background()
	n.publish(&machine.SequenceEvent{Sequence: "reset", Action: machine.SequenceEvent_START}, actorID)
	n.setStage(ctx, runtime.MachineStageResetting, false)
	m := n.member()
	var phases []phase
	if graceful {
		phases = append(phases, phase{"drain", "cordonAndDrainNode"}, phase{"cleanup", "removeAllPods"})
	} else {
		phases = append(phases, phase{"cleanup", "stopAllPods"})
	}
	phases = append(phases, phase{"dbus", "stopDBus"})
	if graceful && m.controlPlane() {
		phases = append(phases, phase{"leave", "leaveEtcd"})
	}
	phases = append(phases, phase{"preReset", "sendResetSignal"}, phase{"stopEverything", "stopAllServices"}, phase{"forceCleanup", "forceCleanup"})
	switch {
	case len(wipe) > 0 && spec:
		phases = append(phases, phase{"resetSpec", "resetSystemDiskSpec"})
	case len(wipe) > 0:
		phases = append(phases, phase{"reset", "resetSystemDisk"})
	}
	if reboot {
		phases = append(phases, phase{"reboot", "reboot"})
	} else {
		phases = append(phases, phase{"shutdown", "shutdown"})
	}
	for _, p := range phases {
		n.publish(&machine.PhaseEvent{Phase: p.name, Action: machine.PhaseEvent_START}, actorID)
		n.publish(&machine.TaskEvent{Task: p.task, Action: machine.TaskEvent_START}, actorID)
		var err error
		switch p.task {
		case "cordonAndDrainNode":
			// taskErrorHandler(logError, ...): a failed drain is logged and the reset goes on.
			if derr := n.cordonAndDrain(m); derr != nil {
				log.Printf("node %s: reset: drain: %v", n.address, derr)
			}
		case "leaveEtcd":
			err = n.leaveEtcdTask()
		case "stopAllServices":
			n.mu.Lock()
			n.servicesStopped = true
			n.mu.Unlock()
			n.trust.settle()
		case "resetSystemDiskSpec", "resetSystemDisk":
			n.wipe(ctx, wipe)
		case "reboot":
			n.goDown("reset")
			return
		case "shutdown":
			n.powerOff("reset: shutdown")
			return
		}
		if err != nil {
			// LeaveEtcd has no error handler: the sequence stops, the machine keeps running.
			log.Printf("node %s: reset: %v", n.address, err)
			n.publish(&machine.SequenceEvent{Sequence: "reset", Action: machine.SequenceEvent_STOP,
				Error: &common.Error{Code: common.Code_FATAL, Message: err.Error()}}, actorID)
			n.mu.Lock()
			n.sequence = ""
			n.mu.Unlock()
			n.setStage(ctx, runtime.MachineStageRunning, true)
			return
		}
		time.Sleep(sequenceStep)
		n.publish(&machine.TaskEvent{Task: p.task, Action: machine.TaskEvent_STOP}, actorID)
		n.publish(&machine.PhaseEvent{Phase: p.name, Action: machine.PhaseEvent_STOP}, actorID)
	}
}

// leaveEtcdTask is the sequencer's LeaveEtcd: nothing to do without etcd data or with etcd not
// running; otherwise LeaveCluster.
func (n *Node) leaveEtcdTask() error {
	n.mu.Lock()
	skip := !n.etcdStarted || n.etcdLeft || n.etcdMemberID == 0
	n.mu.Unlock()
	if skip {
		return nil
	}
	if err := n.leaveEtcd("reset"); err != nil {
		return fmt.Errorf("failed to leave cluster: %w", err)
	}
	return nil
}

// wipe erases the volumes: STATE holds the machine config (the machine is in maintenance mode
// at its next boot), EPHEMERAL etcd's data (and a removed member's stale data with it).
func (n *Node) wipe(ctx context.Context, wipe map[string]bool) {
	n.mu.Lock()
	if wipe["EPHEMERAL"] {
		n.etcdStarted, n.etcdRemoved, n.etcdLeft = false, false, true
		n.etcdMemberID = 0
		n.state.Bootstrapped = false
		n.recoverySnapshot, n.etcdDataLeft, n.etcdFailed = nil, false, ""
	}
	if wipe["STATE"] {
		n.cfg, n.osCACert, n.clusterCA, n.apiCert, n.endpoint, n.pending = nil, nil, nil, nil, "", nil
		s := &n.state
		s.Configured, s.Role, s.Hostname, s.ClusterName, s.InstallImage, s.Config, s.Staged = false, "", "", "", "", "", false
		s.VIP, s.KubernetesNode = nil, nil
	}
	n.mu.Unlock()
	if wipe["EPHEMERAL"] {
		if err := n.cosi.Destroy(ctx, etcdres.NewMember(etcdres.NamespaceName, etcdres.LocalMemberID).Metadata()); err != nil && !cosistate.IsNotFoundError(err) {
			log.Printf("node %s: wipe: %v", n.address, err)
		}
	}
	if wipe["STATE"] {
		for _, id := range []string{configres.ActiveID, configres.PersistentID} {
			md := resource.NewMetadata(configres.NamespaceName, configres.MachineConfigType, id, resource.VersionUndefined)
			if err := n.cosi.Destroy(ctx, md); err != nil && !cosistate.IsNotFoundError(err) {
				log.Printf("node %s: wipe: %v", n.address, err)
			}
		}
	}
	labels := slices.Sorted(func(yield func(string) bool) {
		for l := range wipe {
			if !yield(l) {
				return
			}
		}
	})
	n.trust.record(n.address.String(), TimelineWipe, strings.Join(labels, ","))
}

// powerOff is the end of a sequence that shuts the machine down: it stays off until Start.
func (n *Node) powerOff(why string) {
	n.mu.Lock()
	n.powered = false
	srv := n.srv
	n.lis, n.srv = nil, nil
	n.state.Up = false
	n.sequence = ""
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	n.trust.record(n.address.String(), TimelineDown, why)
	n.trust.settle()
}

// cordonAndDrain is the reset's CordonAndDrainNode against the cluster's real API server: the
// Node is cordoned (spec.unschedulable), then each of its pods that is neither a mirror pod nor a
// DaemonSet's is evicted (policy/v1 Eviction, so PodDisruptionBudgets apply; a 429 is retried)
// and waited for until it is gone (the kubelet finishes the deletion, pods.go), all within the
// drain timeout. Talos drains with the kubelet's credentials; the simulator uses admin ones.
// Without a real API server, or before the Node exists, there is nothing to drain.
func (n *Node) cordonAndDrain(m member) error {
	n.trust.clusterMu.Lock()
	api := n.trust.realAPIs[m.cluster]
	n.trust.clusterMu.Unlock()
	name := nodeName(m.hostname)
	if api == nil || !api.isReady() || name == "" {
		return nil
	}
	if err := api.admin.do(http.MethodGet, "/api/v1/nodes/"+name, nil, &map[string]any{}); isNotFound(err) {
		return nil // the node never joined
	} else if err != nil {
		return err
	}
	if err := api.admin.do(http.MethodPatch, "/api/v1/nodes/"+name, map[string]any{"spec": map[string]any{"unschedulable": true}}, nil); err != nil {
		n.trust.record(n.address.String(), TimelineDrain, "cordon failed: "+err.Error())
		return fmt.Errorf("cordoning %s: %w", name, err)
	}
	n.mu.Lock()
	deadline := time.Now().Add(n.drainTimeout)
	n.mu.Unlock()
	evicted := map[string]bool{}
	for {
		var pods drainPods
		if err := api.admin.do(http.MethodGet, "/api/v1/pods?fieldSelector="+url.QueryEscape("spec.nodeName="+name), nil, &pods); err != nil {
			return err
		}
		left, blocked := 0, ""
		for _, p := range pods.Items {
			if _, mirror := p.Metadata.Annotations[annotationMirror]; mirror || slices.ContainsFunc(p.Metadata.OwnerReferences, func(o ownerRef) bool { return o.Kind == "DaemonSet" }) {
				continue
			}
			left++
			key := p.Metadata.Namespace + "/" + p.Metadata.Name
			if p.Metadata.DeletionTimestamp != nil {
				continue // evicted: the kubelet finishes it
			}
			eviction := map[string]any{"apiVersion": "policy/v1", "kind": "Eviction",
				"metadata": map[string]any{"name": p.Metadata.Name, "namespace": p.Metadata.Namespace}}
			err := api.admin.do(http.MethodPost, "/api/v1/namespaces/"+p.Metadata.Namespace+"/pods/"+p.Metadata.Name+"/eviction", eviction, nil)
			switch {
			case err == nil:
				evicted[key] = true
			case isNotFound(err):
			default:
				blocked = key + ": " + err.Error()
			}
		}
		if left == 0 {
			n.trust.record(n.address.String(), TimelineDrain, fmt.Sprintf("cordoned %s, evicted %s", name, strings.Join(slices.Sorted(func(yield func(string) bool) {
				for k := range evicted {
					if !yield(k) {
						return
					}
				}
			}), ",")))
			return nil
		}
		if time.Now().After(deadline) {
			why := fmt.Sprintf("cordoned %s, drain timed out with %d pods left", name, left)
			if blocked != "" {
				why += " (" + blocked + ")"
			}
			n.trust.record(n.address.String(), TimelineDrain, why)
			return errors.New(why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type ownerRef struct {
	Kind string `json:"kind"`
}

// drainPods are the pods bound to a node as the drain lists them.
type drainPods struct {
	Items []struct {
		Metadata struct {
			Name              string            `json:"name"`
			Namespace         string            `json:"namespace"`
			Annotations       map[string]string `json:"annotations"`
			OwnerReferences   []ownerRef        `json:"ownerReferences"`
			DeletionTimestamp *string           `json:"deletionTimestamp"`
		} `json:"metadata"`
	} `json:"items"`
}
