package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// members is the member list as n's EtcdMemberList shows it: "hostname" or "hostname (learner)".
func members(t *testing.T, s sim, n *Node) []string {
	t.Helper()
	resp, err := s.client(t, n).EtcdMemberList(ctx(t, n), &machine.EtcdMemberListRequest{})
	if err != nil {
		t.Fatalf("etcd members from %s: %v", n.address, err)
	}
	var out []string
	for _, m := range resp.GetMessages()[0].GetMembers() {
		name := m.GetHostname()
		if m.GetIsLearner() {
			name += " (learner)"
		}
		out = append(out, name)
	}
	return out
}

func host(n *Node) string { return n.State().Hostname }

// events are the timeline's entries of the given kinds since from, as "event node".
func events(s sim, from int, kinds ...string) []string {
	var out []string
	for _, e := range s.trust.Timeline()[from:] {
		if slices.Contains(kinds, e.Event) {
			out = append(out, e.Event+" "+e.Node)
		}
	}
	return out
}

// TestALaterControlPlaneJoinsAsALearnerThatDoesNotVote: the bootstrap node founds etcd; a control
// plane that starts later is listed as a learner, does not count for quorum, and is promoted once
// it caught up; a member whose machine stops stays listed.
func TestALaterControlPlaneJoinsAsALearnerThatDoesNotVote(t *testing.T) {
	s := newSimWith(t, 21, 2, 0, WithEtcdPromoteTime(time.Second))
	cp1, cp2 := s.nodes[0], s.nodes[1]
	if got, want := members(t, s, cp1), []string{host(cp1), host(cp2) + " (learner)"}; !slices.Equal(got, want) {
		t.Fatalf("members right after the bootstrap %q, want %q", got, want)
	}
	// A learner does not vote: with it down the founder alone is the quorum.
	cp2.Stop()
	if got := members(t, s, cp1); len(got) != 2 {
		t.Fatalf("a stopped learner left the list: %q", got)
	}
	if err := cp2.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the learner is promoted", func() bool {
		return slices.Equal(members(t, s, cp1), []string{host(cp1), host(cp2)})
	})
	want := []string{TimelineEtcdMemberAdded + " " + cp2.address.String(), TimelineEtcdLearnerPromoted + " " + cp2.address.String()}
	if got := events(s, 0, TimelineEtcdMemberAdded, TimelineEtcdLearnerPromoted); !slices.Equal(got, want) {
		t.Fatalf("timeline %q, want %q", got, want)
	}
	// Now a voter: with it down there is no quorum of two, and the dead member stays listed.
	cp2.Stop()
	_, err := s.client(t, cp1).EtcdMemberList(ctx(t, cp1), &machine.EtcdMemberListRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "etcdserver: no leader") {
		t.Fatalf("member list with one of two voters down: %v, want etcdserver: no leader", err)
	}
}

// TestEtcdLeaveClusterRemovesTheNodesOwnMember: on a control plane the member goes, etcd stops
// and the others no longer list it; a second leave succeeds (NotFound counts as done); a worker
// answers as machined does.
func TestEtcdLeaveClusterRemovesTheNodesOwnMember(t *testing.T) {
	s := newSim(t, 21, 3, 1)
	cp1, cp2, cp3, w := s.nodes[0], s.nodes[1], s.nodes[2], s.nodes[3]
	_, err := s.client(t, w).MachineClient.EtcdLeaveCluster(ctx(t, w), &machine.EtcdLeaveClusterRequest{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "etcd leave is only available on control plane nodes") {
		t.Fatalf("leave on a worker: %v", err)
	}
	mark := len(s.trust.Timeline())
	for range 2 {
		if _, err := s.client(t, cp3).MachineClient.EtcdLeaveCluster(ctx(t, cp3), &machine.EtcdLeaveClusterRequest{}); err != nil {
			t.Fatalf("leave: %v", err)
		}
	}
	if got, want := members(t, s, cp1), []string{host(cp1), host(cp2)}; !slices.Equal(got, want) {
		t.Fatalf("members after cp3 left %q, want %q", got, want)
	}
	svc, err := s.client(t, cp3).ServiceList(ctx(t, cp3))
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range svc.GetMessages()[0].GetServices() {
		if sv.GetId() == "etcd" && sv.GetState() != "Finished" {
			t.Fatalf("etcd on the node that left is %s, want Finished", sv.GetState())
		}
	}
	if got := events(s, mark, TimelineEtcdLeave); len(got) != 2 || got[0] != TimelineEtcdLeave+" "+cp3.address.String() {
		t.Fatalf("timeline %q", got)
	}
	// The leader leaving hands over: the others elect one among themselves.
	if _, err := s.client(t, cp1).MachineClient.EtcdLeaveCluster(ctx(t, cp1), &machine.EtcdLeaveClusterRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := members(t, s, cp2); !slices.Equal(got, []string{host(cp2)}) {
		t.Fatalf("members after the leader left %q", got)
	}
}

// TestEtcdRemoveMemberByIDRemovesADeadMember: from a healthy control plane a stopped member goes
// by id; an unknown id is etcd's "member not found"; a removal that would leave no started quorum
// is refused; forfeiting still works afterwards.
func TestEtcdRemoveMemberByIDRemovesADeadMember(t *testing.T) {
	s := newSim(t, 21, 3, 0)
	cp1, cp2, cp3 := s.nodes[0], s.nodes[1], s.nodes[2]
	cp3.Stop()
	remove := func(from *Node, id uint64) error {
		_, err := s.client(t, from).MachineClient.EtcdRemoveMemberByID(ctx(t, from), &machine.EtcdRemoveMemberByIDRequest{MemberId: id})
		return err
	}
	id := func(n *Node) uint64 { return memberID(n.address.String()) }
	err := remove(cp1, id(cp2))
	if err == nil || !strings.Contains(err.Error(), "re-configuration failed due to not enough started members") {
		t.Fatalf("removing a healthy member with another down: %v", err)
	}
	mark := len(s.trust.Timeline())
	if err := remove(cp2, id(cp3)); err != nil {
		t.Fatalf("removing the dead member: %v", err)
	}
	if got, want := members(t, s, cp1), []string{host(cp1), host(cp2)}; !slices.Equal(got, want) {
		t.Fatalf("members %q, want %q", got, want)
	}
	err = remove(cp1, id(cp3))
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), fmt.Sprintf("failed to remove member %d: etcdserver: member not found", id(cp3))) {
		t.Fatalf("removing it again: %v", err)
	}
	if got := events(s, mark, TimelineEtcdMemberRemoved); !slices.Equal(got, []string{TimelineEtcdMemberRemoved + " " + cp3.address.String()}) {
		t.Fatalf("timeline %q", got)
	}
	if got, err := forfeit(t, s, cp1); err != nil || got != host(cp2) {
		t.Fatalf("forfeit after the removal: %q, %v", got, err)
	}
}

// TestAGracefulResetLeavesEtcdWipesAndComesBackInMaintenance: a worker reset with STATE and
// EPHEMERAL wiped and a reboot comes back in maintenance mode and takes an insecure apply; a
// control plane reset without reboot leaves etcd and stays off; bad labels are refused first.
func TestAGracefulResetLeavesEtcdWipesAndComesBackInMaintenance(t *testing.T) {
	s := newSim(t, 21, 3, 1)
	cp1, cp3, w := s.nodes[0], s.nodes[2], s.nodes[3]
	wipe := []*machine.ResetPartitionSpec{{Label: "STATE", Wipe: true}, {Label: "EPHEMERAL", Wipe: true}}
	_, err := s.client(t, w).MachineClient.Reset(ctx(t, w), &machine.ResetRequest{Graceful: true, SystemPartitionsToWipe: []*machine.ResetPartitionSpec{{Label: "STAT", Wipe: true}}})
	if err == nil || !strings.Contains(err.Error(), `failed to get volume status with label "STAT"`) {
		t.Fatalf("reset with a bad label: %v", err)
	}
	if !w.State().Configured {
		t.Fatal("a refused reset changed the node")
	}
	mark := len(s.trust.Timeline())
	if _, err := s.client(t, w).MachineClient.Reset(ctx(t, w), &machine.ResetRequest{Graceful: true, Reboot: true, SystemPartitionsToWipe: wipe}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker is back in maintenance", func() bool {
		st := w.State()
		return st.Up && !st.Configured && st.Stage == "maintenance"
	})
	if err := apply(t, insecure(t, w), w, s.cl.worker); err != nil {
		t.Fatalf("insecure apply after the reset: %v", err)
	}
	want := []string{TimelineReset, TimelineWipe, TimelineDown, TimelineUp}
	var got []string
	for _, e := range s.trust.Timeline()[mark:] {
		if e.Node == w.address.String() && slices.Contains(want, e.Event) {
			got = append(got, e.Event)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("worker timeline %q, want %q", got, want)
	}

	if _, err := s.client(t, cp3).MachineClient.Reset(ctx(t, cp3), &machine.ResetRequest{Graceful: true, SystemPartitionsToWipe: wipe}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the control plane is off", func() bool { return !cp3.State().Up })
	if got, want := members(t, s, cp1), []string{host(cp1), host(s.nodes[1])}; !slices.Equal(got, want) {
		t.Fatalf("members after the control plane's reset %q, want %q", got, want)
	}
	time.Sleep(2 * testRebootTime) // a shutdown does not come back
	if cp3.State().Up {
		t.Fatal("a reset without reboot came back up")
	}
}
