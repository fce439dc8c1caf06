package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/wait"
)

// bootIDPath is where the kernel publishes the id of the current boot; Talos has no resource for
// it, and talosctl reads this file too. A changed id is the only proof that a node rebooted: a
// node can answer "running and ready" from before the reboot it was asked for.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// attempt bounds one call while waiting, so a node that accepts connections but hangs is asked
// again rather than holding the wait.
const attempt = 10 * time.Second

// poll calls try every opts.Poll until it reports done or the health timeout passes; seen is
// what the last attempt found, for the error. While it waits, what it waits for (what, unless
// "") goes to opts.Progress with what each attempt saw and the time left.
func (r *runner) poll(ctx context.Context, what string, try wait.Check) (string, error) {
	poll := wait.Poll{Timeout: r.opts.HealthTimeout, Interval: r.opts.Poll, Attempt: attempt}
	if what != "" {
		poll.Progress = r.opts.Progress.Start(what, r.opts.HealthTimeout).Seen
	}
	return poll.Until(ctx, try)
}

// waitHealthy waits until the node answers, is running and ready, and returns what it reports.
func (r *runner) waitHealthy(ctx context.Context, n Node, phase Phase) (node.State, error) {
	var state node.State
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for it to answer over mutual TLS, running and ready", n.Target.Where(), phase), func(ctx context.Context) (bool, string, error) {
		s, err := node.Read(ctx, n.Target, r.opts.Creds())
		if err != nil {
			var rerr *node.Error
			if errors.As(err, &rerr) && rerr.NotAnswering() {
				return false, "not answering (" + rerr.Phase + ": " + node.Describe(rerr.Err) + ")", nil
			}
			return false, err.Error(), err
		}
		state = s
		if s.Stage != "running" || !s.Ready {
			return false, fmt.Sprintf("stage %s, ready %t", s.Stage, s.Ready), nil
		}
		return true, "", nil
	})
	if err != nil {
		return node.State{}, &Error{Node: n.Target, Phase: phase, Expected: fmt.Sprintf("the node running and ready within %s", r.opts.HealthTimeout), Seen: seen}
	}
	return state, nil
}

// etcdHealth is what the control planes say about etcd: "" when every expected member is
// listed, started and healthy, else what is wrong.
func (r *runner) etcdHealth(ctx context.Context) string {
	var problems []string
	var listed *machine.EtcdMembers
	for _, m := range r.members {
		c, err := node.Dial(ctx, m.Target, r.opts.Creds())
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", m.Target.Name, err))
			continue
		}
		status, err := c.EtcdStatus(ctx)
		if err == nil && listed == nil {
			var list *machine.EtcdMemberListResponse
			if list, err = c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{QueryLocal: true}); err == nil && len(list.GetMessages()) > 0 {
				listed = list.GetMessages()[0]
			}
		}
		c.Close() //nolint:errcheck
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %s", m.Target.Name, node.Describe(err)))
		case len(status.GetMessages()) == 0:
			problems = append(problems, m.Target.Name+": no etcd status")
		default:
			st := status.GetMessages()[0].GetMemberStatus()
			switch {
			case len(st.GetErrors()) > 0:
				problems = append(problems, fmt.Sprintf("%s: etcd reports %s", m.Target.Name, strings.Join(st.GetErrors(), "; ")))
			case st.GetLeader() == 0:
				problems = append(problems, m.Target.Name+": etcd has no leader")
			case st.GetIsLearner():
				problems = append(problems, m.Target.Name+": etcd member is still a learner")
			}
		}
	}
	if listed != nil {
		// Learners are not counted: a new member catching up, which Talos promotes (svc/etcd.go
		// promoteMember); the rollout awaits the promotion of the control planes it adds.
		var members []*machine.EtcdMember
		var unstarted []string
		for _, m := range listed.GetMembers() {
			if m.GetIsLearner() {
				continue
			}
			members = append(members, m)
			if m.GetHostname() == "" {
				unstarted = append(unstarted, fmt.Sprintf("%x", m.GetId()))
			}
		}
		if len(members) != len(r.members) {
			problems = append(problems, fmt.Sprintf("%d etcd members listed, %s", len(members), r.expectedMembers()))
		}
		if len(unstarted) > 0 {
			problems = append(problems, "members not started: "+strings.Join(unstarted, ", "))
		}
	} else if len(problems) == 0 {
		problems = append(problems, "no control plane listed the etcd members")
	}
	return strings.Join(problems, "; ")
}

// expectedMembers says which control planes the gates expect as etcd members: those declared
// and, while a removal is pending, those still to leave.
func (r *runner) expectedMembers() string {
	var leaving []string
	for _, m := range r.members {
		if m.Leaving {
			leaving = append(leaving, m.Target.Name)
		}
	}
	declared := len(r.members) - len(leaving)
	if len(leaving) == 0 {
		return fmt.Sprintf("%d control planes declared", declared)
	}
	return fmt.Sprintf("%d expected (%d control planes declared and %s, still a member until it leaves)", len(r.members), declared, strings.Join(leaving, ", "))
}

// waitEtcd waits until every etcd member the cluster should have is listed, started and healthy.
// Talos checks this itself only during the Upgrade call and not at all for a config change, and
// two back-to-back calls can both pass it: the rollout holds the line between nodes.
func (r *runner) waitEtcd(ctx context.Context, n Node, phase Phase) error {
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for all %d etcd members listed, started and healthy", n.Target.Where(), phase, len(r.members)), func(ctx context.Context) (bool, string, error) {
		problems := r.etcdHealth(ctx)
		return problems == "", problems, nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: phase, Expected: fmt.Sprintf("all %d etcd members listed, started and healthy within %s", len(r.members), r.opts.HealthTimeout), Seen: seen}
	}
	return nil
}

// bootID reads the id of the node's current boot.
func (r *runner) bootID(ctx context.Context, n Node) (string, error) {
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return "", err
	}
	defer c.Close() //nolint:errcheck
	rd, err := c.Read(ctx, bootIDPath)
	if err != nil {
		return "", err
	}
	defer rd.Close() //nolint:errcheck
	data, err := io.ReadAll(rd)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(data))
	if id == "" {
		return "", errors.New("empty boot id")
	}
	return id, nil
}

// waitReboot waits until the node answers with a boot id other than before.
func (r *runner) waitReboot(ctx context.Context, n Node, before, why string) error {
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for it to come back from the reboot %s (a new boot id)", n.Target.Where(), Reboot, why), func(ctx context.Context) (bool, string, error) {
		id, err := r.bootID(ctx, n)
		switch {
		case err != nil:
			return false, "not answering (" + node.Describe(err) + ")", nil
		case id == before:
			return false, "still on boot " + id, nil
		}
		return true, "", nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: Reboot, Expected: fmt.Sprintf("the node back from the reboot %s within %s (a new boot id)", why, r.opts.HealthTimeout), Seen: seen}
	}
	return nil
}

// settle is what follows every reboot before the next call to the node: the node running and
// ready, and on a control plane every etcd member listed, started and healthy (Talos' own
// upgrade check would otherwise meet this member still starting).
func (r *runner) settle(ctx context.Context, n Node, phase Phase) (node.State, error) {
	state, err := r.waitHealthy(ctx, n, phase)
	if err != nil {
		return state, err
	}
	if n.ControlPlane {
		if err := r.waitEtcd(ctx, n, phase); err != nil {
			return state, err
		}
	}
	return state, nil
}

// forfeitLeadership moves etcd's leadership off a control plane that is about to reboot, so the
// cluster does not lose its leader with it (a leader that goes down stalls every write for an
// election timeout, and the API server's with them). Talos' EtcdForfeitLeadership hands it to
// another member only when this one leads (v1alpha1_server.go, internal/pkg/etcd/etcd.go
// ForfeitLeadership); the rollout then checks that this member no longer leads.
func (r *runner) forfeitLeadership(ctx context.Context, n Node, phase Phase) error {
	if !n.ControlPlane || len(r.members) < 2 {
		return nil
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return &Error{Node: n.Target, Phase: phase, Expected: "a client for the node", Seen: err.Error()}
	}
	defer c.Close() //nolint:errcheck
	leads := func(ctx context.Context) (bool, string, error) {
		st, err := c.EtcdStatus(ctx)
		if err != nil || len(st.GetMessages()) == 0 {
			return false, "", fmt.Errorf("etcd status: %s", node.Describe(err))
		}
		ms := st.GetMessages()[0].GetMemberStatus()
		return ms.GetLeader() == ms.GetMemberId(), fmt.Sprintf("member %x, leader %x", ms.GetMemberId(), ms.GetLeader()), nil
	}
	callCtx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	leader, seen, err := leads(callCtx)
	if err != nil {
		return &Error{Node: n.Target, Phase: phase, Expected: "the etcd status of the member before its reboot", Seen: err.Error()}
	}
	if !leader {
		return nil
	}
	resp, err := c.EtcdForfeitLeadership(callCtx, &machine.EtcdForfeitLeadershipRequest{})
	if err != nil {
		return &Error{Node: n.Target, Phase: phase, Expected: "etcd leadership handed to another member before the reboot", Seen: node.Describe(err)}
	}
	if leader, seen, err = leads(callCtx); err != nil || leader {
		if err != nil {
			seen = err.Error()
		}
		return &Error{Node: n.Target, Phase: phase, Expected: "etcd leadership handed to another member before the reboot", Seen: "still the leader after EtcdForfeitLeadership (" + seen + ")"}
	}
	to := "another member"
	if msgs := resp.GetMessages(); len(msgs) > 0 && msgs[0].GetMember() != "" {
		to = msgs[0].GetMember()
	}
	r.log("%s: etcd leader: handed the leadership to %s before the reboot", n.Target, to)
	return nil
}

// applyConfig sends the declared config in the given mode; when Talos reboots to apply it, the
// node's turn waits for it to come back healthy.
//
// With Kubernetes access, an apply that may reboot (AUTO, REBOOT) is first asked of the node as a
// dry run; when Talos would reboot, the Node is cordoned and drained before the apply and
// uncordoned once the node is back and healthy (drain.go).
func (r *runner) applyConfig(ctx context.Context, n Node, mode machine.ApplyConfigurationRequest_Mode) error {
	var drained *cordoned
	send, rebootAfter := mode, false
	if mode == machine.ApplyConfigurationRequest_AUTO || mode == machine.ApplyConfigurationRequest_REBOOT {
		// Talos 1.14+ never reboots for an apply: the rollout does when the change needs it (boot.go).
		live, err := node.Read(ctx, n.Target, r.opts.Creds())
		if err != nil {
			return &Error{Node: n.Target, Phase: ConfigApply, Expected: "the node's release and config", Seen: node.Describe(err)}
		}
		v114 := AppliesWithoutReboot(live.TalosVersion)
		if v114 || r.opts.Kubernetes {
			resolved, err := r.resolveMode(ctx, n, mode)
			if err != nil {
				return &Error{Node: n.Target, Phase: ConfigApply, Expected: "Talos to accept the config in mode " + mode.String() + " (dry run)", Seen: node.Describe(err)}
			}
			if v114 {
				rebootAfter = resolved == machine.ApplyConfigurationRequest_REBOOT
				if mode == machine.ApplyConfigurationRequest_REBOOT {
					send = machine.ApplyConfigurationRequest_NO_REBOOT
				}
			}
			if r.opts.Kubernetes && resolved == machine.ApplyConfigurationRequest_REBOOT {
				if drained, err = r.cordonAndDrain(ctx, n); err != nil {
					return err
				}
			}
		}
	}
	if err := r.sendConfig(ctx, n, send, drained, rebootAfter); err != nil {
		return err
	}
	if err := r.uncordon(ctx, n, drained); err != nil {
		return &Error{Node: n.Target, Phase: Uncordon, Expected: "Node " + drained.name + " schedulable again after the node's reboot", Seen: err.Error()}
	}
	return nil
}

// sendConfig sends the config and waits for its reboot or its in-place change to land. A Node
// drained for it is uncordoned again when Talos refuses the config (nothing changed) and left
// cordoned when the node does not come back healthy.
// rebootAfter: the node (Talos 1.14+) applies the config without a reboot, and the rollout
// reboots it after, for a change that takes effect only at a boot or the stack's `reboot` mode.
func (r *runner) sendConfig(ctx context.Context, n Node, mode machine.ApplyConfigurationRequest_Mode, drained *cordoned, rebootAfter bool) error {
	refused := func(err error) error {
		if drained != nil {
			if uerr := r.uncordon(ctx, n, drained); uerr != nil {
				r.log("%s: Node %s left cordoned: %s", n.Target, drained.name, uerr)
			}
		}
		return err
	}
	versionsBefore, moved, wait, err := r.inPlaceBefore(ctx, n)
	if err != nil {
		return refused(&Error{Node: n.Target, Phase: ConfigApply, Expected: "the node's config and its components' config versions", Seen: node.Describe(err)})
	}
	before, err := r.bootID(ctx, n)
	if err != nil {
		return refused(&Error{Node: n.Target, Phase: ConfigApply, Expected: "the node's boot id", Seen: node.Describe(err)})
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return refused(&Error{Node: n.Target, Phase: ConfigApply, Expected: "a client for the node", Seen: err.Error()})
	}
	defer c.Close() //nolint:errcheck
	if rebootAfter || (mode != machine.ApplyConfigurationRequest_NO_REBOOT && mode != machine.ApplyConfigurationRequest_STAGED) {
		if err := r.forfeitLeadership(ctx, n, ConfigApply); err != nil {
			return err
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	resp, err := c.ApplyConfiguration(callCtx, &machine.ApplyConfigurationRequest{Data: n.Config, Mode: mode})
	if err != nil {
		return refused(&Error{Node: n.Target, Phase: ConfigApply, Expected: "Talos to accept the config in mode " + mode.String(), Seen: node.Describe(err)})
	}
	applied := mode
	if msgs := resp.GetMessages(); len(msgs) > 0 {
		applied = msgs[0].GetMode()
	}
	r.log("%s: config applied (%s)", n.Target, applied)
	if rebootAfter {
		r.log("%s: Talos applies it without a reboot and the change takes effect at a boot: rebooting", n.Target)
		rebootCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
		defer cancel()
		var opts []client.RebootMode
		if r.opts.RebootMode == machine.UpgradeRequest_POWERCYCLE {
			opts = append(opts, client.WithRebootMode(machine.RebootRequest_POWERCYCLE))
		}
		if err := c.Reboot(rebootCtx, opts...); err != nil {
			return leftCordoned(&Error{Node: n.Target, Phase: ConfigApply, Expected: "Talos to reboot the node after the config apply", Seen: node.Describe(err)}, drained)
		}
		applied = machine.ApplyConfigurationRequest_REBOOT
	}
	if applied != machine.ApplyConfigurationRequest_REBOOT {
		if wait && applied == machine.ApplyConfigurationRequest_NO_REBOOT {
			return r.awaitInPlace(ctx, n, versionsBefore, moved)
		}
		return nil
	}
	if err := r.waitReboot(ctx, n, before, "that applies the config"); err != nil {
		return leftCordoned(err, drained)
	}
	_, err = r.settle(ctx, n, Reboot)
	return leftCordoned(err, drained)
}

// leftCordoned adds to the error of a node that did not come back healthy that its Node stays
// cordoned: no pods should land on it until someone has looked.
func leftCordoned(err error, drained *cordoned) error {
	var rerr *Error
	if err != nil && drained != nil && drained.byUs && errors.As(err, &rerr) {
		rerr.Seen += fmt.Sprintf("; Node %s left cordoned (kubectl uncordon %s once it is healthy)", drained.name, drained.name)
	}
	return err
}

// upgrade asks Talos to install the declared image and waits for the reboot into it, through the
// call talosctl uses for the release the node runs (lifecycle.go): LifecycleService on Talos 1.13+,
// MachineService.Upgrade before.
func (r *runner) upgrade(ctx context.Context, n Node, live node.State) error {
	if UsesLifecycleAPI(live.TalosVersion) {
		r.log("%s: runs %s: upgrading through LifecycleService as talosctl does for Talos %s (pull the installer, install, drain, reboot)", n.Target, live.TalosVersion, lifecycleAPIVersions)
		return r.upgradeLifecycle(ctx, n, live)
	}
	r.log("%s: runs %s: upgrading through MachineService.Upgrade as talosctl does outside Talos %s (Talos installs, drains and reboots itself)", n.Target, live.TalosVersion, lifecycleAPIVersions)
	before, err := r.bootID(ctx, n)
	if err != nil {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: "the node's boot id", Seen: node.Describe(err)}
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: "a client for the node", Seen: err.Error()}
	}
	defer c.Close() //nolint:errcheck
	if err := r.forfeitLeadership(ctx, n, UpgradeCall); err != nil {
		return err
	}
	// Talos pulls and checks the image inside the call: it can take minutes on a slow registry.
	callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	_, err = c.UpgradeWithOptions(callCtx,
		client.WithUpgradeImage(n.InstallerImage),
		client.WithUpgradeRebootMode(r.opts.RebootMode),
	)
	if err != nil {
		return &Error{Node: n.Target, Phase: UpgradeCall, Expected: "Talos to accept " + n.InstallerImage, Seen: node.Describe(err)}
	}
	r.log("%s: upgrading %s -> %s", n.Target, describeImage(live.TalosVersion, live.SchematicID), n.InstallerImage)
	return r.afterUpgradeReboot(ctx, n, live, before, false)
}

// afterUpgradeReboot waits for the node to come back from its upgrade's reboot, healthy, on the
// declared image. One that runs its old image names the causes and remedies of the call it took:
// MachineService.Upgrade installs inside its reboot sequence and aborts when the installer fails
// (e.g. a filesystem it cannot unmount); LifecycleService installed before the reboot and said so
// (exit code 0), so only a new image that did not boot is left.
func (r *runner) afterUpgradeReboot(ctx context.Context, n Node, live node.State, before string, lifecycle bool) error {
	if err := r.waitReboot(ctx, n, before, "into "+n.InstallerImage); err != nil {
		return err
	}
	after, err := r.settle(ctx, n, Reboot)
	if err != nil {
		return err
	}
	if after.TalosVersion != n.TalosVersion || after.SchematicID != n.SchematicID {
		seen := describeImage(after.TalosVersion, after.SchematicID)
		if after.TalosVersion == live.TalosVersion && after.SchematicID == live.SchematicID {
			if lifecycle {
				seen += fmt.Sprintf(", the image it ran before: the installer reported success (LifecycleService, exit code 0), so the new image did not boot "+
					"and Talos rolled back to the old one; `talosctl -n %s dmesg` says why. A machine whose kexec fails needs rebootMode powercycle", n.Target.Address)
			} else {
				// From outside both look alike; the node's kernel log tells them apart.
				seen += fmt.Sprintf(", the image it ran before: Talos aborted the upgrade (it reboots on the old image when the installer fails, "+
					"e.g. a filesystem it cannot unmount) or the new image did not boot and Talos rolled back; `talosctl -n %s dmesg` says which. "+
					"An unmount failure passes with `talosctl -n %s upgrade --stage --image %s` (the install runs early in the next boot), then rerun; "+
					"a machine whose kexec fails needs rebootMode powercycle", n.Target.Address, n.Target.Address, n.InstallerImage)
			}
		}
		return &Error{Node: n.Target, Phase: PostCheck, Expected: describeImage(n.TalosVersion, n.SchematicID), Seen: seen}
	}
	return nil
}

// ApplyMode maps the stack's apply mode (auto, no_reboot, reboot, staged) to Talos'.
func ApplyMode(mode string) (machine.ApplyConfigurationRequest_Mode, error) {
	modes := map[string]machine.ApplyConfigurationRequest_Mode{
		"auto":      machine.ApplyConfigurationRequest_AUTO,
		"no_reboot": machine.ApplyConfigurationRequest_NO_REBOOT,
		"reboot":    machine.ApplyConfigurationRequest_REBOOT,
		"staged":    machine.ApplyConfigurationRequest_STAGED,
	}
	m, ok := modes[mode]
	if !ok {
		keys := []string{"auto", "no_reboot", "reboot", "staged"}
		return 0, fmt.Errorf("apply mode %q is not one of %s", mode, strings.Join(keys, ", "))
	}
	return m, nil
}

// RebootMode maps the stack's reboot mode (default, powercycle) to Talos'.
func RebootMode(mode string) (machine.UpgradeRequest_RebootMode, error) {
	switch mode {
	case "", "default":
		return machine.UpgradeRequest_DEFAULT, nil
	case "powercycle":
		return machine.UpgradeRequest_POWERCYCLE, nil
	}
	return 0, fmt.Errorf("reboot mode %q is not default or powercycle", mode)
}
