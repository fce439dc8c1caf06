package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/redact"
	"talos-cluster/talosnode/rollout"
)

// planKeys is how many changed config keys a plan line names before it counts the rest.
const planKeys = 5

// nodePlan is what an update does to one node, read from the recorded declaration and the new one.
type nodePlan struct {
	node    RolloutNode
	new     bool
	removed bool
	// steps name the changes: "Talos v1.11.5 -> v1.11.6", "schematic 2d61dd07b200 -> 376567988ad3",
	// `config + machine.sysctls["net.core.somaxconn"]`.
	steps  []string
	config bool
	image  bool
	// replaces is the address a new node's name was recorded at (a machine that replaces another).
	replaces string
	// leaving is the rollout's view of a removed node.
	leaving rollout.Node
}

// planOf compares the recorded nodes with the declared ones: the nodes that change, in the order
// the rollout takes them: new control planes (awaited until etcd promotes them), the machines that
// leave (replaced ones, removed workers, removed control planes), then the changes (control planes
// in the stack's order, then workers) and new workers.
func planOf(recorded, declared []RolloutNode) []nodePlan {
	before := map[string]RolloutNode{}
	for _, n := range recorded {
		before[n.Name] = n
	}
	members := rollout.PlanMembers(rolloutNodes(recorded), rolloutNodes(declared))
	added := map[string]bool{}
	for _, n := range members.Added {
		added[n.Target.Name] = true
	}
	byName := map[string]RolloutNode{}
	for _, n := range declared {
		byName[n.Name] = n
	}
	var plans, joins, workersNew []nodePlan
	for _, n := range declared {
		if !added[n.Name] {
			continue
		}
		p := nodePlan{node: n, new: true}
		if was, ok := before[n.Name]; ok {
			p.replaces = was.Address
		}
		if n.Role == "controlplane" {
			joins = append(joins, p)
		} else {
			workersNew = append(workersNew, p)
		}
	}
	plans = append(plans, joins...)
	for _, n := range members.Leaving() {
		was := before[n.Target.Name]
		plans = append(plans, nodePlan{node: was, removed: true, leaving: n})
	}
	ordered := make([]rollout.Node, len(declared))
	for i, n := range declared {
		ordered[i] = rollout.Node{Target: node.Target{Name: n.Name}, ControlPlane: n.Role == "controlplane", New: added[n.Name]}
	}
	cps, workers := rollout.Split(ordered)
	for _, o := range append(cps, workers...) {
		n := byName[o.Target.Name]
		was := before[n.Name]
		p := nodePlan{node: n}
		if was.TalosVersion != n.TalosVersion {
			p.image = true
			p.steps = append(p.steps, fmt.Sprintf("Talos %s -> %s", was.TalosVersion, n.TalosVersion))
		}
		if was.SchematicID != n.SchematicID {
			p.image = true
			p.steps = append(p.steps, fmt.Sprintf("schematic %s -> %s", shortID(was.SchematicID), shortID(n.SchematicID)))
		}
		if was.MachineConfiguration != n.MachineConfiguration {
			if step := configStep(was.MachineConfiguration, n.MachineConfiguration); step != "" {
				p.config = true
				p.steps = append(p.steps, step)
			}
		}
		if len(p.steps) > 0 {
			plans = append(plans, p)
		}
	}
	return append(plans, workersNew...)
}

// configStep names the config keys that change between two machine configs, "" when they are
// the same config in canonical form (a new key order or comment changes nothing on the node).
// It never quotes a value: the configs hold secrets.
func configStep(before, after string) string {
	if after == "" {
		return "config (not known until the update)"
	}
	was, errWas := redact.FromYAML([]byte(before))
	now, errNow := redact.FromYAML([]byte(after))
	if errWas != nil || errNow != nil {
		return "config"
	}
	if was.Hash == now.Hash {
		return ""
	}
	wasKeys, errWas := redact.Keys(was.Redacted)
	nowKeys, errNow := redact.Keys(now.Redacted)
	if errWas != nil || errNow != nil {
		return "config"
	}
	changes := redact.ChangedKeys(wasKeys, nowKeys)
	if len(changes) == 0 {
		return "config: a secret value"
	}
	names := make([]string, 0, planKeys+1)
	for i, c := range changes {
		if i == planKeys {
			names = append(names, fmt.Sprintf("and %d more", len(changes)-planKeys))
			break
		}
		names = append(names, c.String())
	}
	return "config " + strings.Join(names, ", ")
}

func shortID(id string) string {
	if id == "" {
		return `""`
	}
	return id[:min(len(id), 12)]
}

// effect says whether the node reboots. answer is Talos' dry run of the config apply in the
// stack's mode (auto), asked only when the config alone changes; 0 with askErr nil when it was not
// asked.
//
// Talos 1.14+ applies every change without a reboot (the rollout's boot.go): the node's release is
// the declared one here, as only the config changes when these cases are reached.
func (p nodePlan) effect(mode machine.ApplyConfigurationRequest_Mode, answer machine.ApplyConfigurationRequest_Mode, asked bool, askErr error) string {
	v114 := rollout.AppliesWithoutReboot(p.node.TalosVersion)
	switch {
	case p.new && p.replaces != "" && p.node.Role == "controlplane":
		return fmt.Sprintf("new machine at %s, replacing the one at %s: its own config apply installs it; it joins etcd as a learner and counts once etcd promotes it, "+
			"awaited before any other change", p.node.Address, p.replaces)
	case p.new && p.replaces != "":
		return fmt.Sprintf("new machine at %s, replacing the one at %s: its own config apply installs it", p.node.Address, p.replaces)
	case p.new && p.node.Role == "controlplane":
		return "new control plane: its own config apply installs it; it joins etcd as a learner and counts once etcd promotes it, awaited before any other change"
	case p.new:
		return "new node: its own config apply installs it"
	case p.removed && p.leaving.Replaced:
		return fmt.Sprintf("the machine at %s: %s; if it does not answer: %s", p.node.Address, rollout.LeavingSteps(p.leaving, true), rollout.LeavingSteps(p.leaving, false))
	case p.removed:
		return fmt.Sprintf("no longer declared, leaves the cluster: %s; if it does not answer: %s", rollout.LeavingSteps(p.leaving, true), rollout.LeavingSteps(p.leaving, false))
	case p.image && p.config:
		return "reboots once (upgrade): the config is staged for it, or applied after it when the running release refuses it"
	case p.image:
		return "reboots (upgrade)"
	case mode == machine.ApplyConfigurationRequest_STAGED:
		return "staged, active after its next reboot"
	case mode == machine.ApplyConfigurationRequest_NO_REBOOT && v114:
		return "in place (apply mode no_reboot: Talos 1.14+ takes every change; one that needs a boot waits for the next)"
	case mode == machine.ApplyConfigurationRequest_NO_REBOOT:
		return "in place (apply mode no_reboot)"
	case mode == machine.ApplyConfigurationRequest_REBOOT && v114:
		return "reboots (apply mode reboot: Talos 1.14+ applies it without one, then the rollout drains and reboots the node)"
	case mode == machine.ApplyConfigurationRequest_REBOOT:
		return "reboots (apply mode reboot)"
	case askErr != nil:
		return "in place or a reboot, as Talos answers at the update (its dry run failed: " + askErr.Error() + ")"
	case !asked:
		return "in place or a reboot, as Talos answers at the update (a dry run needs os:admin)"
	case answer == machine.ApplyConfigurationRequest_NO_REBOOT:
		return "in place (Talos' dry run: no reboot)"
	case answer == machine.ApplyConfigurationRequest_REBOOT && v114:
		return "reboots (Talos 1.14+ applies it without one, but the change goes past what takes effect without a boot: the rollout drains and reboots the node)"
	case answer == machine.ApplyConfigurationRequest_REBOOT:
		return "reboots (Talos' dry run: it cannot apply this in place)"
	default:
		return "Talos' dry run answers " + strings.ToLower(answer.String())
	}
}

// line is the plan's line for the node: "cp-1: config + machine.sysctls[...]: in place (...)".
func (p nodePlan) line(effect string) string {
	if len(p.steps) == 0 {
		return p.node.Name + ": " + effect
	}
	return fmt.Sprintf("%s: %s; %s", p.node.Name, strings.Join(p.steps, ", "), effect)
}

// planLines is a preview's plan of the update, one line per node it changes, each with how Talos
// would take the change. ask, when not nil, is Talos' dry run of a node's config apply; it is asked
// only for a node whose config alone changes in apply mode auto.
func planLines(ctx context.Context, recorded, declared []RolloutNode, mode machine.ApplyConfigurationRequest_Mode,
	ask func(context.Context, RolloutNode) (machine.ApplyConfigurationRequest_Mode, error),
) []string {
	var lines []string
	for _, p := range planOf(recorded, declared) {
		var answer machine.ApplyConfigurationRequest_Mode
		var err error
		asked := false
		if ask != nil && p.config && !p.image && !p.new && mode == machine.ApplyConfigurationRequest_AUTO {
			answer, err = ask(ctx, p.node)
			asked = err == nil
		}
		lines = append(lines, p.line(p.effect(mode, answer, asked, err)))
	}
	return lines
}
