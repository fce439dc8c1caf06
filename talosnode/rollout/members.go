package rollout

import (
	"fmt"
	"net"
	"strings"
)

// Members is what an update does to the cluster's membership, read from the nodes the last update
// recorded and the ones the stack declares now; nodes are matched by name, as the stack's resources
// are. It decides nothing by asking the nodes: the rollout does that when it takes each one out.
type Members struct {
	// RemovedWorkers and RemovedControlPlanes are recorded nodes the stack no longer declares, in
	// the recorded order: each is cordoned, drained, reset (STATE and EPHEMERAL wiped) and its Node
	// deleted; a control plane leaves etcd first.
	RemovedWorkers, RemovedControlPlanes []Node
	// Replaced are recorded nodes the stack now declares at another address under the same name:
	// the machine at the recorded address goes (its etcd member, a reset), the Node name stays with
	// the machine at the new address.
	Replaced []Node
	// Added are declared nodes not recorded, and the new machines of Replaced.
	Added []Node
}

// PlanMembers compares the recorded nodes with the declared ones. An address not known yet
// (a preview's unknown, "") is never taken for a replacement.
func PlanMembers(recorded, declared []Node) Members {
	byName := map[string]Node{}
	for _, n := range declared {
		byName[n.Target.Name] = n
	}
	was := map[string]bool{}
	var m Members
	for _, old := range recorded {
		was[old.Target.Name] = true
		now, kept := byName[old.Target.Name]
		switch {
		case !kept && old.ControlPlane:
			m.RemovedControlPlanes = append(m.RemovedControlPlanes, old)
		case !kept:
			m.RemovedWorkers = append(m.RemovedWorkers, old)
		case now.Target.Address != "" && old.Target.Address != "" && host(now.Target.Address) != host(old.Target.Address):
			m.Replaced = append(m.Replaced, old)
			m.Added = append(m.Added, now)
		}
	}
	for _, n := range declared {
		if !was[n.Target.Name] {
			m.Added = append(m.Added, n)
		}
	}
	return m
}

// Leaving are the machines that go, in the order the rollout takes them out: the replaced
// machines, then the removed workers, then the removed control planes; each marked Leaving (and
// Replaced).
func (m Members) Leaving() []Node {
	var out []Node
	for _, n := range m.Replaced {
		n.Leaving, n.Replaced = true, true
		out = append(out, n)
	}
	for _, n := range append(append([]Node(nil), m.RemovedWorkers...), m.RemovedControlPlanes...) {
		n.Leaving = true
		out = append(out, n)
	}
	return out
}

// Refusal is a membership change the rollout will not make: the input key and why, with the fix.
type Refusal struct {
	Key, Reason string
}

// MaxControlPlaneRemovals is how many of n recorded control planes one update may take out:
// etcd's fault tolerance, (n-1)/2, so that the members left keep a quorum even if every one that
// goes had already failed; one at least, so that a cluster of two can go down to one (each
// member leaves only after the health gates), and never all of them.
func MaxControlPlaneRemovals(n int) int {
	return min(max(1, (n-1)/2), n-1)
}

// CheckMembers refuses, before anything changes, the membership changes the rollout cannot make
// safely: removing every control plane; taking out more recorded control planes than
// MaxControlPlaneRemovals (removed or replaced); declaring a node at the address of a machine this
// update resets; changing a node's role in place. Removing the bootstrap node is allowed once
// others remain: it is a control plane like the others after the bootstrap.
func CheckMembers(recorded, declared []Node) []Refusal {
	if len(recorded) == 0 {
		return nil
	}
	m := PlanMembers(recorded, declared)
	var out []Refusal
	recordedCPs, declaredCPs := 0, 0
	for _, n := range recorded {
		if n.ControlPlane {
			recordedCPs++
		}
	}
	for _, n := range declared {
		if n.ControlPlane {
			declaredCPs++
		}
	}
	var going []string
	for _, n := range m.RemovedControlPlanes {
		going = append(going, n.Target.Name)
	}
	for _, n := range m.Replaced {
		if n.ControlPlane {
			going = append(going, n.Target.Name+" (at "+n.Target.Address+")")
		}
	}
	switch limit := MaxControlPlaneRemovals(recordedCPs); {
	case recordedCPs > 0 && declaredCPs == 0:
		out = append(out, Refusal{Key: "nodes", Reason: fmt.Sprintf("removes every control plane (%s): a cluster needs one; keep at least one declared "+
			"(to take the whole cluster down, destroy the stack)", strings.Join(going, ", "))})
	case len(going) > limit:
		fix := fmt.Sprintf("take out at most %d in this update and the rest in later ones", limit)
		if recordedCPs-len(going) < 1 || limit < 1 {
			fix = "add the new control planes in one update and take the old ones out in the next"
		}
		out = append(out, Refusal{Key: "nodes", Reason: fmt.Sprintf("takes %d of the %d control planes out of etcd at once (%s): more than %d at a time "+
			"could leave the members that stay without a quorum if those that go had already failed; %s",
			len(going), recordedCPs, strings.Join(going, ", "), limit, fix)})
	}
	reset := map[string]string{}
	for _, n := range append(append(append([]Node(nil), m.RemovedWorkers...), m.RemovedControlPlanes...), m.Replaced...) {
		if n.Target.Address != "" {
			reset[host(n.Target.Address)] = n.Target.Name
		}
	}
	before := map[string]Node{}
	for _, n := range recorded {
		before[n.Target.Name] = n
	}
	for i, n := range declared {
		if was, ok := reset[host(n.Target.Address)]; ok && n.Target.Address != "" && was != n.Target.Name {
			out = append(out, Refusal{Key: fmt.Sprintf("nodes[%d].address", i), Reason: fmt.Sprintf(
				"%s is declared at %s, the address of %s, which this update takes out of the cluster and resets: the reset would wipe the machine %s is to run on; "+
					"remove %s in one update and declare %s in the next (a rename is such a remove and add)",
				n.Target.Name, n.Target.Address, was, n.Target.Name, was, n.Target.Name)})
		}
		if old, ok := before[n.Target.Name]; ok && old.ControlPlane != n.ControlPlane {
			out = append(out, Refusal{Key: fmt.Sprintf("nodes[%d].role", i), Reason: fmt.Sprintf(
				"%s was recorded as a %s and is declared a %s: Talos does not change a machine's type in place; remove it in one update "+
					"(it is reset) and declare it again with the new role in the next", n.Target.Name, roleOf(old), roleOf(n))})
		}
	}
	return out
}

func roleOf(n Node) string {
	if n.ControlPlane {
		return "controlplane"
	}
	return "worker"
}

// host is an address without its port.
func host(address string) string {
	if h, _, err := net.SplitHostPort(address); err == nil {
		return h
	}
	return address
}
