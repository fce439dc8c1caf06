package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
)

// Talos drains a node only inside its upgrade sequence (v1.11.5
// internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go, CordonAndDrainNode). A config
// apply that reboots runs SequenceReboot, which has no drain and no cordon: the pods get only the
// kubelet's graceful shutdown (30 s) and PodDisruptionBudgets are not asked. So before an apply
// that may reboot (AUTO, REBOOT), the rollout asks the node which mode it would use
// (ApplyConfiguration with dry_run, v1alpha1_server.go), and when the answer is REBOOT and it has
// the cluster's Kubernetes API (Options.Kubernetes), it cordons the Node, evicts its pods through
// the Eviction API (which honours PodDisruptionBudgets) as kubectl drain does, applies, waits for
// the reboot and the node's health, and uncordons the Node. An upgrade through MachineService.Upgrade
// (Talos before 1.13) is left alone: Talos drains it itself. One through LifecycleService (1.13+)
// is drained here too: the call neither drains nor reboots (lifecycle.go).

// Drain is the phase of cordoning and draining a node before a config apply that reboots it;
// Uncordon the phase of making it schedulable again after.
const (
	Drain    Phase = "drain"
	Uncordon Phase = "uncordon"
)

// maxEvictionBackoff caps the wait between evictions a PodDisruptionBudget refuses.
const maxEvictionBackoff = 5 * time.Second

// drainTimeout is the bound of one node's drain.
func (r *runner) drainTimeout() time.Duration {
	if r.opts.DrainTimeout > 0 {
		return r.opts.DrainTimeout
	}
	return r.opts.HealthTimeout
}

// resolveMode asks the node, with a dry run, which mode an apply of its declared config would use.
// Talos validates the config in the dry run too, so a config it refuses stops the turn before any
// drain.
func (r *runner) resolveMode(ctx context.Context, n Node, mode machine.ApplyConfigurationRequest_Mode) (machine.ApplyConfigurationRequest_Mode, error) {
	return DryRun(ctx, n, r.opts.Creds(), mode)
}

// DryRun asks the node which mode an apply of its declared config in mode would use
// (ApplyConfiguration with dry_run: Talos validates the config and changes nothing). A preview
// uses it to say whether a node's change reboots it; it needs os:admin. On Talos 1.14+, which
// answers NO_REBOOT to everything, REBOOT means the rollout reboots the node after the apply
// (boot.go).
func DryRun(ctx context.Context, n Node, creds node.Credentials, mode machine.ApplyConfigurationRequest_Mode) (machine.ApplyConfigurationRequest_Mode, error) {
	c, err := node.Dial(ctx, n.Target, creds)
	if err != nil {
		return 0, err
	}
	defer c.Close() //nolint:errcheck
	if mode == machine.ApplyConfigurationRequest_AUTO || mode == machine.ApplyConfigurationRequest_REBOOT {
		live, err := node.Read(ctx, n.Target, creds)
		if err != nil {
			return 0, err
		}
		if AppliesWithoutReboot(live.TalosVersion) {
			return dryRun114(ctx, c, live, n, mode)
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	resp, err := c.ApplyConfiguration(callCtx, &machine.ApplyConfigurationRequest{Data: n.Config, Mode: mode, DryRun: true})
	if err != nil {
		return 0, err
	}
	if msgs := resp.GetMessages(); len(msgs) > 0 {
		return msgs[0].GetMode(), nil
	}
	return mode, nil
}

// cordoned is a Node the rollout drained: its name, and whether the rollout cordoned it (a Node
// cordoned before the turn stays cordoned).
type cordoned struct {
	name   string
	byUs   bool
	client *kube.Client
}

// cordonAndDrain cordons the node's Node and evicts its pods, retrying the evictions a
// PodDisruptionBudget refuses with a growing pause, until none is left or the drain timeout
// passes. On a timeout the Node is uncordoned again (nothing was applied; the node runs as
// before) and the error names the pods left and the budgets that blocked.
func (r *runner) cordonAndDrain(ctx context.Context, n Node) (*cordoned, error) {
	return r.cordonAndDrainFor(ctx, n, configReboot)
}

// drainReason says, in the log and errors, what reboots the node a drain makes way for.
type drainReason struct {
	// why is the log's cause ("the config change reboots the node"); before names the change the
	// drain precedes; untouched says what a failed drain left undone.
	why, before, untouched string
}

var configReboot = drainReason{why: "the config change reboots the node", before: "the config apply that reboots it", untouched: "nothing was applied"}

// cordonAndDrainFor is cordonAndDrain before the change reason names.
func (r *runner) cordonAndDrainFor(ctx context.Context, n Node, reason drainReason) (*cordoned, error) {
	if _, err := r.kube(ctx); err != nil {
		return nil, &Error{Node: n.Target, Phase: Drain, Expected: "an admin kubeconfig to drain the node", Seen: err.Error()}
	}
	name, err := r.kubeNodeName(ctx, n)
	if err != nil {
		return nil, &Error{Node: n.Target, Phase: Drain, Expected: "the node's Node name", Seen: node.Describe(err)}
	}
	return r.drainNamed(ctx, n, name, reason, false)
}

// drainNamed cordons and drains Node name. dead: the node does not answer, so its kubelet never
// confirms a pod's end; the drain is done once every pod is evicted (terminating), and deleting
// the Node lets the pod garbage collector finish them.
func (r *runner) drainNamed(ctx context.Context, n Node, name string, reason drainReason, dead bool) (*cordoned, error) {
	k, err := r.kube(ctx)
	if err != nil {
		return nil, &Error{Node: n.Target, Phase: Drain, Expected: "an admin kubeconfig to drain the node", Seen: err.Error()}
	}
	bases := r.apiServers()
	info, err := k.Node(ctx, bases, name)
	if err != nil {
		return nil, &Error{Node: n.Target, Phase: Drain, Expected: "Node " + name + " in the cluster", Seen: err.Error()}
	}
	c := &cordoned{name: name, byUs: !info.Unschedulable, client: k}
	if c.byUs {
		if err := k.SetUnschedulable(ctx, bases, name, true); err != nil {
			return nil, &Error{Node: n.Target, Phase: Drain, Expected: "Node " + name + " cordoned", Seen: err.Error()}
		}
		r.log("%s: %s: Node %s cordoned, draining it (PodDisruptionBudgets honoured, at most %s)", n.Target, reason.why, name, r.drainTimeout())
	} else {
		r.log("%s: %s: Node %s was cordoned before this turn and stays so; draining it (at most %s)", n.Target, reason.why, name, r.drainTimeout())
	}

	timeout := r.drainTimeout()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pause := r.opts.Poll
	lastLog, left, blocked := "", []string{}, map[string]string{}
	for {
		callCtx, callCancel := context.WithTimeout(dctx, attempt)
		pods, err := k.PodsToDrain(callCtx, bases, name)
		refused, fatal := false, error(nil)
		if err == nil {
			left = left[:0]
			clear(blocked)
			for _, p := range pods {
				left = append(left, p.String())
				if p.Terminating {
					continue
				}
				switch err := k.Evict(callCtx, bases, p); {
				case err == nil:
					r.log("%s: evicted %s", n.Target, p)
				case isTooManyRequests(err):
					refused = true
					budget := kube.BlockingBudget(err)
					if budget == "" {
						blocked[p.String()] = err.Error()
					} else {
						blocked[p.String()] = fmt.Sprintf("PodDisruptionBudget %s/%s (%s)", p.Namespace, budget, strings.Join(causes(err), "; "))
					}
				case isAPIError(err):
					fatal = fmt.Errorf("evicting %s: %w", p, err)
				default:
					blocked[p.String()] = "the API server did not answer: " + err.Error()
				}
			}
		}
		callCancel()
		if err == nil && (len(pods) == 0 || (dead && allTerminating(pods))) {
			r.log("%s: Node %s drained", n.Target, name)
			return c, nil
		}
		seen := drainSeen(left, blocked, err)
		if fatal != nil {
			return nil, r.drainFailed(ctx, n, c, reason, fatal.Error())
		}
		if seen != lastLog {
			r.log("%s: draining Node %s: %s", n.Target, name, seen)
			lastLog = seen
		}
		wait := r.opts.Poll
		if refused {
			wait, pause = pause, min(pause*2, maxEvictionBackoff)
		} else {
			pause = r.opts.Poll
		}
		select {
		case <-dctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, r.drainFailed(ctx, n, c, reason, fmt.Sprintf("after %s, %s", timeout, seen))
		case <-time.After(wait):
		}
	}
}

// drainFailed uncordons a Node the rollout cordoned, and says so, for the error that stops the
// rollout before the change.
func (r *runner) drainFailed(ctx context.Context, n Node, c *cordoned, reason drainReason, seen string) error {
	expected := fmt.Sprintf("every pod evicted from Node %s within %s, honouring PodDisruptionBudgets, before %s", c.name, r.drainTimeout(), reason.before)
	if c.byUs {
		if err := r.uncordon(ctx, n, c); err != nil {
			seen += fmt.Sprintf("; Node %s left cordoned: %s", c.name, err)
		} else {
			seen += fmt.Sprintf("; %s and Node %s is uncordoned again", reason.untouched, c.name)
		}
	} else {
		seen += fmt.Sprintf("; %s; Node %s stays cordoned as it was before", reason.untouched, c.name)
	}
	return &Error{Node: n.Target, Phase: Drain, Expected: expected, Seen: seen}
}

// uncordon makes the Node schedulable again if the rollout cordoned it, retrying until the health
// timeout while no API server answers (a control plane's own may be just back from its reboot).
func (r *runner) uncordon(ctx context.Context, n Node, c *cordoned) error {
	if c == nil || !c.byUs {
		return nil
	}
	seen, err := r.poll(ctx, fmt.Sprintf("%s: waiting for an API server to uncordon Node %s", n.Target.Where(), c.name), func(ctx context.Context) (bool, string, error) {
		err := c.client.SetUnschedulable(ctx, r.apiServers(), c.name, false)
		switch {
		case err == nil:
			return true, "", nil
		case isAPIError(err):
			return false, err.Error(), err
		}
		return false, err.Error(), nil
	})
	if err != nil {
		return errors.New(seen)
	}
	r.log("%s: Node %s uncordoned", n.Target, c.name)
	return nil
}

// drainSeen is what a drain round saw: the pods left, and why evictions were refused, the pods
// grouped by reason (a budget that blocks is named once).
func drainSeen(left []string, blocked map[string]string, listErr error) string {
	if listErr != nil {
		return "listing the Node's pods: " + listErr.Error()
	}
	out := fmt.Sprintf("%d pods left (%s)", len(left), strings.Join(left, ", "))
	byReason := map[string][]string{}
	for pod, reason := range blocked {
		byReason[reason] = append(byReason[reason], pod)
	}
	for _, reason := range slices.Sorted(maps.Keys(byReason)) {
		pods := byReason[reason]
		slices.Sort(pods)
		out += fmt.Sprintf("; eviction of %s refused by %s", strings.Join(pods, ", "), reason)
	}
	return out
}

func isAPIError(err error) bool {
	var apiErr *kube.APIError
	return errors.As(err, &apiErr)
}

func isTooManyRequests(err error) bool {
	var apiErr *kube.APIError
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusTooManyRequests
}

func causes(err error) []string {
	var apiErr *kube.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Causes
	}
	return nil
}

func allTerminating(pods []kube.DrainPod) bool {
	for _, p := range pods {
		if !p.Terminating {
			return false
		}
	}
	return true
}
