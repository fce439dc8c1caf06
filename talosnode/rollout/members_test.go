package rollout

import (
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/talosnode/node"
)

// stack is nodes written "cp-1@10.0.0.1" (control plane) or "w-1@10.0.0.4" (worker).
func stack(entries ...string) []Node {
	var out []Node
	for _, e := range entries {
		name, address, _ := strings.Cut(e, "@")
		out = append(out, Node{Target: node.Target{Name: name, Address: address}, ControlPlane: strings.HasPrefix(name, "cp-")})
	}
	return out
}

func TestPlanMembersNamesRemovedAddedAndReplacedNodes(t *testing.T) {
	recorded := stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.4", "w-2@10.0.0.5", "w-3@10.0.0.6")
	// cp-3 and w-1 go, cp-2 moves to a new machine (same name, new address, a port written
	// differently is no move), w-4 and cp-4 come.
	declared := stack("cp-1@10.0.0.1:50000", "cp-2@10.0.0.12", "cp-4@10.0.0.14", "w-2@10.0.0.5", "w-3@", "w-4@10.0.0.7")
	m := PlanMembers(recorded, declared)
	for _, tc := range []struct {
		what string
		got  []Node
		want string
	}{
		{"removed control planes", m.RemovedControlPlanes, "cp-3"},
		{"removed workers", m.RemovedWorkers, "w-1"},
		{"replaced", m.Replaced, "cp-2"},
		{"added", m.Added, "cp-2,cp-4,w-4"},
	} {
		if got := names(tc.got); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.what, got, tc.want)
		}
	}
	if m.Replaced[0].Target.Address != "10.0.0.2" || m.Added[0].Target.Address != "10.0.0.12" {
		t.Errorf("the replaced machine is the recorded address, the added one the new: %v %v", m.Replaced[0].Target, m.Added[0].Target)
	}
	leaving := m.Leaving()
	if got := names(leaving); got != "cp-2,w-1,cp-3" {
		t.Errorf("leaving order %s, want the replaced machines, then workers, then control planes", got)
	}
	if !leaving[0].Leaving || !leaving[0].Replaced || !leaving[1].Leaving || leaving[1].Replaced {
		t.Errorf("leaving marks: %+v", leaving)
	}
	if cps, workers := Split(append(declared, leaving...)); names(cps) != "cp-1,cp-2,cp-4" || names(workers) != "w-2,w-3,w-4" {
		t.Errorf("leaving nodes are not rolled: %s / %s", names(cps), names(workers))
	}
	if m := PlanMembers(recorded, recorded); len(m.RemovedControlPlanes)+len(m.RemovedWorkers)+len(m.Replaced)+len(m.Added) != 0 {
		t.Errorf("no change: %+v", m)
	}
}

func reasons(refusals []Refusal) []string {
	var out []string
	for _, r := range refusals {
		out = append(out, r.Key+": "+r.Reason)
	}
	return out
}

func TestCheckMembersRefusesWhatCannotBeDoneSafelyAndNamesTheFix(t *testing.T) {
	three := stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.4", "w-2@10.0.0.5")
	for _, tc := range []struct {
		name               string
		recorded, declared []Node
		want               []string // what the one refusal says
	}{
		{"every control plane removed", three, stack("w-1@10.0.0.4", "w-2@10.0.0.5"),
			[]string{"nodes: removes every control plane (cp-1, cp-2, cp-3): a cluster needs one; keep at least one declared"}},
		{"two of three at once", three, stack("cp-1@10.0.0.1", "w-1@10.0.0.4", "w-2@10.0.0.5"),
			[]string{"nodes: takes 2 of the 3 control planes out of etcd at once (cp-2, cp-3): more than 1 at a time", "take out at most 1 in this update and the rest in later ones"}},
		{"a removal and a replacement of three at once", three, stack("cp-1@10.0.0.1", "cp-2@10.0.0.12", "w-1@10.0.0.4", "w-2@10.0.0.5"),
			[]string{"nodes: takes 2 of the 3 control planes out of etcd at once (cp-3, cp-2 (at 10.0.0.2))"}},
		{"the only control plane moved to a new machine", stack("cp-1@10.0.0.1", "w-1@10.0.0.4"), stack("cp-1@10.0.0.11", "w-1@10.0.0.4"),
			[]string{"nodes: takes 1 of the 1 control planes out of etcd at once", "add the new control planes in one update and take the old ones out in the next"}},
		{"a removed worker's address declared for a new one", three, stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.4", "w-9@10.0.0.5:50000"),
			[]string{"nodes[4].address: w-9 is declared at 10.0.0.5:50000, the address of w-2, which this update takes out of the cluster and resets", "remove w-2 in one update and declare w-9 in the next (a rename is such a remove and add)"}},
		{"a replaced machine's address taken by another node", three, stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.9", "w-2@10.0.0.4"),
			[]string{"nodes[4].address: w-2 is declared at 10.0.0.4, the address of w-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := reasons(CheckMembers(tc.recorded, tc.declared))
			if len(got) != 1 {
				t.Fatalf("refusals %q, want one", got)
			}
			for _, want := range tc.want {
				if !strings.Contains(got[0], want) {
					t.Errorf("refusal %q, want it to say %q", got[0], want)
				}
			}
		})
	}
	role := stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.4")
	role[3].ControlPlane = true
	if got := reasons(CheckMembers(three[:4], role)); len(got) != 1 || !strings.HasPrefix(got[0], "nodes[3].role: w-1 was recorded as a worker and is declared a controlplane") {
		t.Errorf("role change: %q", got)
	}
}

func TestCheckMembersAllowsOneAtATimeTheBootstrapNodeAddingAndAFirstUp(t *testing.T) {
	three := stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.4")
	five := stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3", "cp-4@10.0.0.4", "cp-5@10.0.0.5")
	for _, tc := range []struct {
		name               string
		recorded, declared []Node
	}{
		{"a first up", nil, three},
		{"the bootstrap node removed, others remain", three, stack("cp-2@10.0.0.2", "cp-3@10.0.0.3", "w-1@10.0.0.4")},
		{"two of five", five, five[2:]},
		{"two down to one", three[1:], stack("cp-3@10.0.0.3", "w-1@10.0.0.4")},
		{"a worker and a control plane removed, nodes added", three, stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-4@10.0.0.14", "w-2@10.0.0.15")},
		{"a dead control plane replaced at a new address", three, stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.13", "w-1@10.0.0.4")},
		{"an address not known yet", three, stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@", "w-1@")},
	} {
		if got := reasons(CheckMembers(tc.recorded, tc.declared)); len(got) > 0 {
			t.Errorf("%s: refused %q", tc.name, got)
		}
	}
	if got := []int{MaxControlPlaneRemovals(1), MaxControlPlaneRemovals(2), MaxControlPlaneRemovals(3), MaxControlPlaneRemovals(5), MaxControlPlaneRemovals(7)}; !slices.Equal(got, []int{0, 1, 1, 2, 3}) {
		t.Errorf("removals allowed of 1, 2, 3, 5, 7 control planes: %v", got)
	}
}

func TestMemberProblemsIgnoresLearnersAndNamesWhatIsMissingOrExtra(t *testing.T) {
	member := func(id uint64, name, address string, learner bool) *machine.EtcdMember {
		return &machine.EtcdMember{Id: id, Hostname: name, PeerUrls: []string{"https://" + address + ":2380"}, IsLearner: learner}
	}
	cps := stack("cp-1@10.0.0.1:50000", "cp-2@10.0.0.2")
	list := []*machine.EtcdMember{member(1, "cp-1", "10.0.0.1", false), member(2, "talos-abc", "10.0.0.2", false), member(4, "cp-4", "10.0.0.4", true)}
	if got := MemberProblems(list, cps, nil); got != "" {
		t.Errorf("a learner is not counted, a member is known by its peer address: %q", got)
	}
	list = append(list, member(3, "cp-3", "10.0.0.3", false))
	if got, want := MemberProblems(list, cps, nil), "members no control plane accounts for: 3 (cp-3, https://10.0.0.3:2380)"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got := MemberProblems(list, cps, stack("cp-3@10.0.0.3")); got != "" {
		t.Errorf("a joining control plane's member is neither expected nor extra: %q", got)
	}
	list[1].Hostname = ""
	if got, want := MemberProblems(list[:2], stack("cp-1@10.0.0.1", "cp-2@10.0.0.2", "cp-3@10.0.0.3"), nil), "cp-2: member not started; no voting member for cp-3"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	// A replaced machine is known by its address only: its name is the new machine's.
	old := stack("cp-2@10.0.0.2")[0]
	old.Replaced = true
	if IsMemberOf(member(9, "cp-2", "10.0.0.12", false), old) || !IsMemberOf(member(2, "cp-2", "10.0.0.2", false), old) {
		t.Error("a replaced machine's member is the one on its recorded address")
	}
}

func TestTheResetOfALeavingMachineWipesStateAndEphemeralAndReboots(t *testing.T) {
	req := ResetRequest(true)
	var labels []string
	for _, p := range req.GetSystemPartitionsToWipe() {
		if p.GetWipe() {
			labels = append(labels, p.GetLabel())
		}
	}
	if !req.GetGraceful() || !req.GetReboot() || !slices.Equal(labels, []string{"STATE", "EPHEMERAL"}) || req.GetMode() != machine.ResetRequest_ALL {
		t.Errorf("reset request %v", req)
	}
	if ResetRequest(false).GetGraceful() {
		t.Error("a replaced machine's reset is not graceful")
	}
}
