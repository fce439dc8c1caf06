package node

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	cosistate "github.com/cosi-project/runtime/pkg/state"
	"github.com/google/uuid"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultRebootTime is how long a simulated reboot keeps a node away unless WithRebootTime says
// otherwise.
const DefaultRebootTime = 2 * time.Second

// WithRebootTime sets how long a reboot (an upgrade's, an apply's, Reboot's) keeps the node down.
func WithRebootTime(d time.Duration) Option {
	return func(o *options) { o.rebootTime = d }
}

// WithEtcdJoinTime sets how long a control plane's etcd member takes, after each boot, to rejoin
// its cluster (default 0: at once). Meanwhile the member does not answer (EtcdStatus on it fails,
// it counts against quorum and the others list it unhealthy) while the machine is already running
// and ready: Talos' MachineStatus counts a running service whose health is not known yet as fine
// (controllers/runtime/machine_status.go servicesCheck), and the etcd service's first health check
// comes 5 s after its start (system/services/etcd.go HealthSettings: InitialDelay 5 s, Period 20 s).
func WithEtcdJoinTime(d time.Duration) Option {
	return func(o *options) { o.etcdJoinTime = d }
}

// bootImage is what the bootloader boots: a Talos release from an Image Factory schematic.
type bootImage struct{ version, schematic string }

// sequence step pacing: the machine takes a moment for each phase, so a client sees the RPC
// answer before the events, and the events before the connection drops.
const (
	sequenceStart = 100 * time.Millisecond
	sequenceStep  = 10 * time.Millisecond
)

func errMaintenanceUnimplemented(method string) error {
	return status.Errorf(codes.Unimplemented, "method %s not implemented", method)
}

// listen opens the API listener; the caller holds no lock.
func (n *Node) listen() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lis != nil {
		return nil
	}
	// A machine whose config leaves its link without an address boots, but nothing reaches it.
	n.state.NodeAddress = nodeAddressing(n.cfg, n.address, n.links)
	if n.state.NodeAddress.Lost != "" {
		n.state.Up = false
		return nil
	}
	lis, srv, err := n.newServer()
	if err != nil {
		return err
	}
	n.lis, n.srv = lis, srv
	n.state.Up = true
	go func() { _ = srv.serve(lis) }()
	return nil
}

// Start powers the machine on: it boots (a new boot id, a staged config becomes active) and
// listens. A stopped node comes back with its state intact; a node in the middle of a reboot
// comes up when the reboot ends.
func (n *Node) Start() error {
	n.mu.Lock()
	if n.powered && (n.lis != nil || n.rebooting) {
		n.mu.Unlock()
		return nil
	}
	n.powered = true
	rebooting := n.rebooting
	n.mu.Unlock()
	if rebooting {
		return nil
	}
	return n.boot()
}

// Stop powers the machine off: connections are refused until Start.
func (n *Node) Stop() {
	n.mu.Lock()
	n.powered = false
	srv := n.srv
	n.lis, n.srv = nil, nil
	n.state.Up = false
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
		n.trust.record(n.address.String(), TimelineDown, "stop")
		// A dead VIP holder loses its etcd lease: another control plane takes the VIP.
		n.trust.settle()
	}
}

// goDown takes the machine away for a reboot: its listener closes (clients see Unavailable, event
// streams end) and it boots again after the reboot time, or twice that when the new image fails
// to boot and the bootloader falls back.
func (n *Node) goDown(reason string) {
	n.mu.Lock()
	srv := n.srv
	n.lis, n.srv = nil, nil
	n.state.Up = false
	n.rebooting = true
	d := n.rebootTime
	if n.installed != nil && (n.bootFails || n.stagedInstall) {
		d *= 2
	}
	n.state.Stage = runtime.MachineStageRebooting.String()
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	n.trust.record(n.address.String(), TimelineDown, reason)
	n.trust.settle()
	time.AfterFunc(d, func() {
		n.mu.Lock()
		n.rebooting = false
		powered := n.powered
		n.mu.Unlock()
		if !powered {
			return // switched off meanwhile: it boots at Start
		}
		if err := n.boot(); err != nil {
			log.Printf("node %s: boot after reboot: %v", n.address, err)
		}
	})
}

// boot is one boot of the machine: the bootloader's image (the upgrade's, or the old one when
// the new fails), a new boot id and event stream, the persisted config made active, machined's
// boot sequence, then the API.
func (n *Node) boot() error {
	ctx := context.Background()
	n.mu.Lock()
	pending := n.pending
	n.pending = nil
	n.state.Staged = false
	rolledBack := false
	if n.installed != nil {
		if n.bootFails {
			rolledBack = true
		} else {
			n.state.TalosVersion, n.state.Schematic = n.installed.version, n.installed.schematic
		}
		n.installed = nil
	}
	n.stagedInstall, n.servicesStopped = false, false
	// A member that left has no data: its etcd starts and joins again as a learner (members.go).
	n.etcdLeft = false
	// A failed pre-state is retried by the new machined, unless a failed restore left files.
	if !n.etcdDataLeft {
		n.etcdFailed = ""
	}
	n.bootedAt = time.Now()
	n.bootID = uuid.NewString()
	n.state.BootID = n.bootID
	n.etcdJoining = n.etcdJoin > 0
	joinAfter, bootID := n.etcdJoin, n.bootID
	n.events = newEventLog()
	n.sequence = ""
	schematic := n.state.Schematic
	n.booting = true
	n.mu.Unlock()

	if pending != nil {
		err := n.activate(ctx, *pending, nil)
		if err != nil {
			n.mu.Lock()
			n.booting = false
			n.mu.Unlock()
			return err
		}
	}
	// A new machined: its config comes from the STATE partition alone, which Talos makes the
	// active config without a `persistent` one (controllers/config/acquire.go).
	if err := n.cosi.Destroy(ctx, resource.NewMetadata(configres.NamespaceName, configres.MachineConfigType, configres.PersistentID, resource.VersionUndefined)); err != nil && !cosistate.IsNotFoundError(err) {
		return err
	}
	n.mu.Lock()
	n.booting = false
	cfg := n.cfg
	n.mu.Unlock()
	if cfg != nil {
		n.podsConfigured(ctx, cfg, true)
	}
	if err := put(ctx, n.cosi, schematicExtension(schematic)); err != nil {
		return err
	}
	n.mu.Lock()
	configured := n.cfg != nil
	n.mu.Unlock()
	if configured {
		n.bootSequence(ctx)
	} else {
		n.setStage(ctx, runtime.MachineStageMaintenance, true)
	}
	if err := n.listen(); err != nil {
		return err
	}
	s := n.State()
	detail := s.TalosVersion + " " + s.Schematic
	if rolledBack {
		detail += " rolled back"
	}
	n.trust.record(n.address.String(), TimelineUp, detail)
	// A machine that comes back may take the VIP, register its Node, start its etcd member.
	n.trust.settle()
	if joinAfter > 0 {
		time.AfterFunc(joinAfter, func() { n.etcdJoined(bootID) })
	}
	return nil
}

// etcdJoined ends the etcd member's rejoin after the boot bootID, if the machine still runs it.
func (n *Node) etcdJoined(bootID string) {
	n.mu.Lock()
	if n.bootID != bootID || !n.etcdJoining {
		n.mu.Unlock()
		return
	}
	n.etcdJoining = false
	n.mu.Unlock()
	if m := n.member(); m.controlPlane() && m.etcdStarted {
		n.trust.record(n.address.String(), TimelineEtcdJoined, "member rejoined after boot")
	}
	n.trust.settle()
}

// setStage is machined's MachineStatus controller: the resource and its event.
func (n *Node) setStage(ctx context.Context, stage runtime.MachineStage, ready bool) {
	res := machineStatus(stage)
	if stage == runtime.MachineStageRunning && ready {
		// The readiness checks of machine_status.go that the simulation models (staticpods.go).
		res.TypedSpec().Status.UnmetConditions = n.unmetConditions()
		ready = len(res.TypedSpec().Status.UnmetConditions) == 0
	}
	res.TypedSpec().Status.Ready = ready
	if stage == runtime.MachineStageRunning {
		if err := put(ctx, n.cosi, ephemeralVolume()); err != nil {
			log.Printf("node %s: EPHEMERAL volume: %v", n.address, err)
		}
	}
	if err := put(ctx, n.cosi, res); err != nil {
		log.Printf("node %s: machine status: %v", n.address, err)
	}
	n.mu.Lock()
	n.state.Stage = stage.String()
	n.mu.Unlock()
	n.publish(&machine.MachineStatusEvent{
		Stage:  machine.MachineStatusEvent_MachineStage(stage),
		Status: &machine.MachineStatusEvent_MachineStatus{Ready: ready},
	}, "")
}

type phase struct{ name, task string }

// runPhases publishes machined's phase and task events; hook runs at each phase start.
func (n *Node) runPhases(phases []phase, actorID string, pause time.Duration, hook func(phase)) {
	for _, p := range phases {
		n.publish(&machine.PhaseEvent{Phase: p.name, Action: machine.PhaseEvent_START}, actorID)
		if hook != nil {
			hook(p)
		}
		n.publish(&machine.TaskEvent{Task: p.task, Action: machine.TaskEvent_START}, actorID)
		if p.task == "reboot" {
			return // the machine goes down inside the reboot task: no STOP events
		}
		time.Sleep(pause)
		n.publish(&machine.TaskEvent{Task: p.task, Action: machine.TaskEvent_STOP}, actorID)
		n.publish(&machine.PhaseEvent{Phase: p.name, Action: machine.PhaseEvent_STOP}, actorID)
	}
}

// bootSequence is machined's boot sequence of a configured machine, instantly.
func (n *Node) bootSequence(ctx context.Context) {
	n.publish(&machine.SequenceEvent{Sequence: "boot", Action: machine.SequenceEvent_START}, "")
	n.setStage(ctx, runtime.MachineStageBooting, false)
	n.runPhases([]phase{
		{"memorySizeCheck", "memorySizeCheck"}, {"diskSizeCheck", "diskSizeCheck"}, {"env", "setUserEnvVars"},
		{"dbus", "startDBus"}, {"ephemeral", "mountEphemeralPartition"}, {"udevSetup", "writeUdevRules"},
		{"userDisks", "mountUserDisks"}, {"userSetup", "writeUserFiles"}, {"startEverything", "startAllServices"},
	}, "", 0, nil)
	for _, svc := range n.services() {
		if svc.state == "Running" {
			n.publish(&machine.ServiceStateEvent{
				Service: svc.id, Action: machine.ServiceStateEvent_RUNNING, Message: svc.message,
				Health: &machine.ServiceHealth{Unknown: svc.unknown, Healthy: svc.healthy, LastMessage: svc.message},
			}, "")
		}
	}
	n.publish(&machine.SequenceEvent{Sequence: "boot", Action: machine.SequenceEvent_STOP}, "")
	n.setStage(ctx, runtime.MachineStageRunning, true)
}

// lockSequence is machined's sequence lock: one sequence at a time; only a reboot may take over
// a reboot (boot ends before the API is up here). A refused sequence is a LOCKED noop event.
func (n *Node) lockSequence(seq string) bool {
	n.mu.Lock()
	running := n.sequence
	if running == "" {
		n.sequence = seq
	}
	n.mu.Unlock()
	if running == "" {
		return true
	}
	if running == "reboot" && seq == "reboot" {
		return false // the running reboot does it
	}
	n.publish(&machine.SequenceEvent{
		Sequence: seq,
		Action:   machine.SequenceEvent_NOOP,
		Error:    &common.Error{Code: common.Code_LOCKED, Message: "sequence not started: locked"},
	}, "")
	return false
}

// rebootSequence is machined's reboot sequence (Reboot, apply with a reboot): the machine goes
// down and boots with its persisted config.
func (n *Node) rebootSequence(actorID string, powercycle bool, why string) {
	if !n.lockSequence("reboot") {
		return
	}
	go func() {
		time.Sleep(sequenceStart)
		ctx := context.Background()
		n.publish(&machine.SequenceEvent{Sequence: "reboot", Action: machine.SequenceEvent_START}, actorID)
		n.setStage(ctx, runtime.MachineStageRebooting, true)
		phases := []phase{{"cleanup", "stopAllPods"}, {"dbus", "stopDBus"}}
		if !powercycle {
			phases = append(phases, phase{"kexec", "kexecPrepare"})
		}
		phases = append(phases, phase{"stopEverything", "stopAllServices"}, phase{"reboot", "reboot"})
		n.runPhases(phases, actorID, sequenceStep, nil)
		n.goDown(why)
	}()
}

// Reboot runs the reboot sequence, as `talosctl reboot`.
func (n *Node) Reboot(ctx context.Context, req *machine.RebootRequest) (*machine.RebootResponse, error) {
	if !n.configured() {
		return nil, errMaintenanceUnimplemented("Reboot")
	}
	if k := n.trust.kubeAtApply(n); k != nil {
		k.Mode = req.GetMode().String()
		n.mu.Lock()
		n.state.KubeAtReboot = append(n.state.KubeAtReboot, *k)
		n.mu.Unlock()
	}
	actorID := uuid.NewString()
	n.rebootSequence(actorID, req.GetMode() == machine.RebootRequest_POWERCYCLE, "reboot")
	return &machine.RebootResponse{Messages: []*machine.Reboot{{ActorId: actorID}}}, nil
}

func (n *Node) configured() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.osCACert != nil
}

// bootIDPath is the kernel file talosctl reads to tell boots apart.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// Read streams a file; only the boot id exists here. It needs os:admin, as on Talos (authz.go).
func (n *Node) Read(req *machine.ReadRequest, stream grpc.ServerStreamingServer[common.Data]) error {
	if !n.configured() {
		return errMaintenanceUnimplemented("Read")
	}
	if req.GetPath() != bootIDPath {
		return fmt.Errorf("stat %s: no such file or directory", req.GetPath())
	}
	n.mu.Lock()
	id := n.bootID
	n.mu.Unlock()
	return stream.Send(&common.Data{Bytes: []byte(id + "\n")})
}

// SetBootFails is the fault "the new image does not boot": while set, an upgrade's reboot comes
// back on the old version and schematic, after about twice the reboot time (Talos reverts the
// bootloader and reboots).
func (n *Node) SetBootFails(fails bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bootFails = fails
	n.state.BootFails = fails
}
