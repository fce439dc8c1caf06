package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// InstallerRegistry resolves an installer image reference as a pull would: to the Image Factory
// schematic and Talos version it installs, or the pull's error.
type InstallerRegistry interface {
	Installer(ref string) (schematic, version string, err error)
}

// SetInstallers makes the simulation's installer images resolvable (the simulated Image Factory).
func (t *Trust) SetInstallers(r InstallerRegistry) {
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	t.installers = r
}

func (t *Trust) installer(ref string) (bootImage, error) {
	t.timelineMu.Lock()
	r := t.installers
	t.timelineMu.Unlock()
	if r == nil {
		return bootImage{}, fmt.Errorf("failed to pull image %q: no registry is reachable from the simulation", ref)
	}
	schematic, version, err := r.Installer(ref)
	if err != nil {
		return bootImage{}, err
	}
	return bootImage{version: version, schematic: schematic}, nil
}

// Upgrade is machined's Upgrade (v1alpha1_server.go): the installer image is "pulled" first, then
// on a control plane, unless forced, etcd must allow it; then the upgrade sequence runs
// asynchronously and the RPC answers at once.
func (n *Node) Upgrade(ctx context.Context, req *machine.UpgradeRequest) (*machine.UpgradeResponse, error) {
	if !n.configured() {
		// The maintenance service wants os:admin, which a maintenance caller never has.
		return nil, status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
	}
	refuse := func(err error) (*machine.UpgradeResponse, error) {
		n.trust.record(n.address.String(), TimelineUpgradeRefused, err.Error())
		return nil, err
	}
	target, err := n.trust.installer(req.GetImage())
	if err != nil {
		return refuse(fmt.Errorf("error validating installer image %q: %w", req.GetImage(), err))
	}
	if n.member().controlPlane() && !req.GetForce() {
		if err := n.validateEtcdForUpgrade(); err != nil {
			return refuse(err)
		}
	}
	actorID := uuid.NewString()
	seq := "upgrade"
	if req.GetStage() {
		seq = "stageUpgrade"
	}
	n.trust.record(n.address.String(), TimelineUpgrade, fmt.Sprintf("%s %s%s", req.GetImage(), req.GetRebootMode(), map[bool]string{true: " staged"}[req.GetStage()]))
	if n.lockSequence(seq) {
		go n.upgradeSequence(actorID, seq, target, req.GetRebootMode() == machine.UpgradeRequest_POWERCYCLE)
	}
	return &machine.UpgradeResponse{Messages: []*machine.Upgrade{{Ack: "Upgrade request received", ActorId: actorID}}}, nil
}

// upgradeSequence is machined's upgrade sequence (or stageUpgrade: the install runs at the next
// boot, which reboots once more). The kexec phase (reboot mode DEFAULT) is where MachineStatus
// turns REBOOTING; with POWERCYCLE it stays UPGRADING until the machine goes down.
func (n *Node) upgradeSequence(actorID, seq string, target bootImage, powercycle bool) {
	ctx := context.Background()
	time.Sleep(sequenceStart)
	n.publish(&machine.SequenceEvent{Sequence: seq, Action: machine.SequenceEvent_START}, actorID)
	n.setStage(ctx, runtime.MachineStageUpgrading, true)
	var phases []phase
	if seq == "upgrade" {
		m := n.member()
		if !skipNodeRegistration(m.cfg) {
			phases = append(phases, phase{"drain", "cordonAndDrainNode"})
		}
		phases = append(phases, phase{"cleanup", "stopAllPods"}, phase{"dbus", "stopDBus"}, phase{"stopServices", "stopServicesForUpgrade"},
			phase{"unmount", "unmountPodMounts"}, phase{"unmountBind", "unmountSystemDiskBindMounts"},
			phase{"unmountSystem", "unmountEphemeralPartition"}, phase{"volumeFinalize", "teardownLifecycle"},
			phase{"upgrade", "upgrade"}, phase{"meta", "reloadMeta"})
	} else {
		phases = append(phases, phase{"cleanup", "stopAllPods"}, phase{"dbus", "stopDBus"}, phase{"stopServices", "stopServicesForUpgrade"})
	}
	if !powercycle {
		phases = append(phases, phase{"kexec", "kexecPrepare"})
	}
	phases = append(phases, phase{"stopEverything", "stopAllServices"}, phase{"reboot", "reboot"})
	n.mu.Lock()
	aborts := n.upgradeAborts
	preflight := n.installerPreflight(target)
	n.mu.Unlock()
	if preflight != nil && seq == "upgrade" {
		// The installer's pre-flight checks run inside the "upgrade" task (cmd/installer/pkg/install/
		// preflight.go): the new release must be upgradeable from the running one
		// (compatibility.TalosVersion.UpgradeableFrom). A failure installs nothing, and the machine reboots on the image it runs, as any failed
		// upgrade does (website/content/v1.11/talos-guides/upgrading-talos.md).
		at := slices.IndexFunc(phases, func(p phase) bool { return p.name == "upgrade" })
		n.runPhases(phases[:at], actorID, sequenceStep, func(p phase) {
			if p.name == "stopServices" {
				n.stopServices()
			}
		})
		msg := "pre-flight checks failed: " + preflight.Error()
		n.trust.record(n.address.String(), TimelineUpgradeRefused, msg)
		n.publish(&machine.SequenceEvent{Sequence: seq, Action: machine.SequenceEvent_STOP,
			Error: &common.Error{Code: common.Code_FATAL, Message: msg}}, actorID)
		n.goDown("upgrade failed")
		return
	}
	if aborts && seq == "upgrade" {
		// Talos cannot unmount a filesystem held open: it aborts the upgrade and reboots on the
		// image it runs (website/content/v1.11/talos-guides/upgrading-talos.md, "What happens if an
		// upgrade fails?"). Nothing is installed.
		at := slices.IndexFunc(phases, func(p phase) bool { return p.name == "unmount" })
		n.runPhases(phases[:at+1], actorID, sequenceStep, func(p phase) {
			if p.name == "stopServices" {
				n.stopServices()
			}
		})
		n.publish(&machine.SequenceEvent{Sequence: seq, Action: machine.SequenceEvent_STOP,
			Error: &common.Error{Code: common.Code_FATAL, Message: "error unmounting: device or resource busy"}}, actorID)
		n.goDown("upgrade aborted")
		return
	}
	n.runPhases(phases, actorID, sequenceStep, func(p phase) {
		switch p.name {
		case "stopServices":
			n.stopServices()
		case "kexec":
			n.setStage(ctx, runtime.MachineStageRebooting, true)
		}
	})
	n.mu.Lock()
	// The installer wrote the new image (a staged upgrade installs it at the next boot, which
	// then reboots again: one longer down interval here).
	n.installed = &target
	n.stagedInstall = seq == "stageUpgrade"
	n.mu.Unlock()
	n.goDown("upgrade")
}

// installerPreflight is the installer's pre-flight check of an upgrade to target
// (cmd/installer/pkg/install/preflight.go, talosVersion): the target release must accept the
// running one as its upgrade source (compatibility.TalosVersion.UpgradeableFrom). Talos v1.9's
// installer also checked the Kubernetes of the running components; from v1.11 on (v1.11.5,
// v1.13.9, v1.14.1) it checks the release alone. nil when the upgrade may go ahead. Callers hold n.mu.
func (n *Node) installerPreflight(target bootImage) error {
	host, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: n.state.TalosVersion})
	if err != nil {
		return fmt.Errorf("error parsing host Talos version: %w", err)
	}
	installer, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: target.version})
	if err != nil {
		return fmt.Errorf("error parsing installer Talos version: %w", err)
	}
	return installer.UpgradeableFrom(host)
}

// stopServices is the stopServices phase: cri, trustd and what depends on them (kubelet, etcd).
func (n *Node) stopServices() {
	n.mu.Lock()
	n.servicesStopped = true
	n.mu.Unlock()
	ids := []string{"kubelet"}
	if n.member().controlPlane() {
		ids = append(ids, "etcd", "trustd")
	}
	for _, id := range ids {
		n.publish(&machine.ServiceStateEvent{Service: id, Action: machine.ServiceStateEvent_FINISHED, Message: "Service finished successfully"}, "")
	}
	n.trust.settle()
}

// SetUpgradeAborts is the fault "a filesystem cannot be unmounted": while set, an upgrade stops
// after its unmount phase and the node reboots on the image it ran.
func (n *Node) SetUpgradeAborts(aborts bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.upgradeAborts = aborts
}
