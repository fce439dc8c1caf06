package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/constants"

	"talos-cluster/talosnode/node"
)

// Talos 1.13 added LifecycleService.Upgrade, which replaces MachineService.Upgrade (deprecated,
// removed in 1.18: api/machine/machine.proto). `talosctl upgrade` (v1.14.1
// cmd/talosctl/cmd/talos/upgrade.go, upgradeViaLifecycleService) takes it for a node whose Version
// tag is in talosUpgradeAPIVersionRange (>1.13.0-alpha.2 <2.0.0) and the old call otherwise. The new
// call only runs the installer (internal/app/lifecycle/lifecycle.go): the installer image must have
// been pulled first (ImageService.Pull; container.go finds it in containerd's store), and it neither
// checks etcd, nor cordons and drains, nor reboots: talosctl pulls, upgrades, drains the Node
// client-side and calls Reboot. The rollout does the same, with its own gates.

// lifecycleAPIVersions is talosctl's talosUpgradeAPIVersionRange, as text for the log.
const lifecycleAPIVersions = ">1.13.0-alpha.2 <2.0.0"

var lifecycleAPIRange = semver.MustParseRange(lifecycleAPIVersions)

// UsesLifecycleAPI says whether a node running the Talos release tag running (v1.13.9) is upgraded
// through LifecycleService, as talosctl decides it (semver.ParseTolerant of the Version tag, as
// helpers.TalosVersionCheck does); an unparsable tag takes the old call.
func UsesLifecycleAPI(running string) bool {
	v, err := semver.ParseTolerant(running)
	return err == nil && lifecycleAPIRange(v)
}

// systemContainerd is where talosctl upgrade pulls the installer and runs it from: its
// --namespace default "system" (upgrade.go, image.go containerdInstance).
var systemContainerd = &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}

// upgradeReboot is the drain before an upgrade's reboot through LifecycleService.
var upgradeReboot = drainReason{
	why:       "the upgrade reboots the node (LifecycleService does not drain)",
	before:    "the install of the new image and the reboot into it",
	untouched: "nothing was installed",
}

// upgradeLifecycle upgrades a node on Talos 1.13+: it pulls the installer, cordons and drains the
// Node (with Kubernetes access), checks etcd and hands over its leadership on a control plane, runs
// the installer through LifecycleService.Upgrade, reboots with the stack's reboot mode, waits for
// the new boot, and uncordons the Node once the node is back and healthy.
//
// The drain comes before the install, as in Talos' own upgrade sequence (drain, then install):
// a drain refused after the install would leave a new image that boots, undrained, at the node's
// next reboot, whatever causes it.
func (r *runner) upgradeLifecycle(ctx context.Context, n Node, live node.State) error {
	before, err := r.bootID(ctx, n)
	if err != nil {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: "the node's boot id", Seen: node.Describe(err)}
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: "a client for the node", Seen: err.Error()}
	}
	defer c.Close() //nolint:errcheck
	if err := r.pullInstaller(ctx, c, n); err != nil {
		return err
	}
	var drained *cordoned
	if r.opts.Kubernetes {
		if drained, err = r.cordonAndDrainFor(ctx, n, upgradeReboot); err != nil {
			return err
		}
	}
	// Nothing is installed yet: a stop here leaves the node as it was, schedulable again.
	undo := func(err error) error {
		if drained != nil {
			if uerr := r.uncordon(ctx, n, drained); uerr != nil {
				r.log("%s: Node %s left cordoned: %s", n.Target, drained.name, uerr)
			}
		}
		return err
	}
	if n.ControlPlane {
		// MachineService.Upgrade checked etcd itself before its reboot; LifecycleService does not.
		if err := r.waitEtcd(ctx, n, UpgradeCall); err != nil {
			return undo(err)
		}
	}
	if err := r.forfeitLeadership(ctx, n, UpgradeCall); err != nil {
		return undo(err)
	}
	if err := r.installLifecycle(ctx, c, n); err != nil {
		return undo(err)
	}
	callCtx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	if err := c.Reboot(callCtx, client.WithRebootMode(rebootRequestMode(r.opts.RebootMode))); err != nil {
		return undo(&Error{Node: n.Target, Phase: Reboot, Expected: fmt.Sprintf("Talos to reboot the node (mode %s) into the installed %s", rebootRequestMode(r.opts.RebootMode), n.InstallerImage),
			Seen: node.Describe(err) + "; the new image is installed and boots at the node's next reboot"})
	}
	r.log("%s: upgrading %s -> %s (rebooting, mode %s)", n.Target, describeImage(live.TalosVersion, live.SchematicID), n.InstallerImage, rebootRequestMode(r.opts.RebootMode))
	if err := r.afterUpgradeReboot(ctx, n, live, before, true); err != nil {
		return leftCordoned(err, drained)
	}
	if err := r.uncordon(ctx, n, drained); err != nil {
		return &Error{Node: n.Target, Phase: Uncordon, Expected: "Node " + drained.name + " schedulable again after the node's upgrade", Seen: err.Error()}
	}
	return nil
}

// pullInstaller puts the installer image into the node's containerd store (ImageService.Pull), as
// talosctl does before LifecycleService.Upgrade.
func (r *runner) pullInstaller(ctx context.Context, c *client.Client, n Node) error {
	// A pull can take minutes on a slow registry.
	callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	fail := func(err error) error {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: "Talos to pull " + n.InstallerImage + " (ImageService.Pull)", Seen: node.Describe(err)}
	}
	stream, err := c.ImageClient.Pull(callCtx, &machine.ImageServicePullRequest{Containerd: systemContainerd, ImageRef: n.InstallerImage})
	if err != nil {
		return fail(err)
	}
	var name string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
		if got := resp.GetName(); got != "" {
			name = got
		}
	}
	r.log("%s: pulled %s (%s)", n.Target, n.InstallerImage, name)
	return nil
}

// installerTail is how many of the installer's last output lines an error quotes.
const installerTail = 15

// installLifecycle runs the installer through LifecycleService.Upgrade and reads its stream: the
// installer's output, then its exit code. A non-zero exit code (a pre-flight refusal, a disk it
// cannot write) installs nothing; the error quotes the installer's last lines.
func (r *runner) installLifecycle(ctx context.Context, c *client.Client, n Node) error {
	callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	expected := "LifecycleService.Upgrade to install " + n.InstallerImage + " (installer exit code 0)"
	var output []string
	seen := func(what string) string {
		if len(output) == 0 {
			return what + "; the installer printed nothing"
		}
		return what + "; the installer's output ends: " + strings.Join(output[max(0, len(output)-installerTail):], " | ")
	}
	stream, err := c.LifecycleClient.Upgrade(callCtx, &machine.LifecycleServiceUpgradeRequest{
		Containerd: systemContainerd,
		Source:     &machine.InstallArtifactsSource{ImageName: n.InstallerImage},
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: expected, Seen: node.Describe(err)}
	}
	exit, exited := int32(0), false
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &Error{Node: n.Target, Phase: UpgradeCall, Expected: expected, Seen: seen(node.Describe(err))}
		}
		switch p := resp.GetProgress().GetResponse().(type) {
		case *machine.LifecycleServiceInstallProgress_Message:
			if line := strings.TrimSpace(p.Message); line != "" {
				output = append(output, line)
			}
		case *machine.LifecycleServiceInstallProgress_ExitCode:
			exit, exited = p.ExitCode, true
		}
	}
	switch {
	case !exited:
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: expected, Seen: seen("the stream ended without the installer's exit code")}
	case exit != 0:
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: expected, Seen: seen(fmt.Sprintf("installer exit code %d%s; nothing was installed", exit, exitDescription(exit))) +
			fmt.Sprintf(". If the installer cannot write a disk the running system holds, `talosctl -n %s upgrade --legacy --stage --image %s` installs it early in the next boot "+
				"(talosctl's --stage works only with --legacy, MachineService.Upgrade, removed in Talos 1.18); then rerun", n.Target.Address, n.InstallerImage)}
	}
	r.log("%s: installed %s through LifecycleService (installer exit code 0, %d lines of output)", n.Target, n.InstallerImage, len(output))
	return nil
}

// exitDescription names an installer exit code as talosctl does (v1.14.1
// cmd/talosctl/cmd/talos/lifecycle/lifecycle.go exitCodeDescription).
func exitDescription(code int32) string {
	switch int(code) {
	case constants.ExitInvalidInput:
		return " (invalid input)"
	case constants.ExitUnsupported:
		return " (unsupported operation)"
	case constants.ExitEnvironment:
		return " (environment error)"
	case constants.ExitDependency:
		return " (dependency error)"
	case constants.ExitIO:
		return " (I/O error)"
	case constants.ExitInstall:
		return " (installation error)"
	}
	return ""
}

// rebootRequestMode is the stack's reboot mode for the Reboot call.
func rebootRequestMode(mode machine.UpgradeRequest_RebootMode) machine.RebootRequest_Mode {
	if mode == machine.UpgradeRequest_POWERCYCLE {
		return machine.RebootRequest_POWERCYCLE
	}
	return machine.RebootRequest_DEFAULT
}
