package node

import (
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// leaderSeenBy is the leader the member on n reports in its EtcdStatus.
func leaderSeenBy(t *testing.T, s sim, n *Node) uint64 {
	t.Helper()
	st, err := s.client(t, n).EtcdStatus(ctx(t, n))
	if err != nil {
		t.Fatalf("etcd status of %s: %v", n.address, err)
	}
	return st.GetMessages()[0].GetMemberStatus().GetLeader()
}

func forfeit(t *testing.T, s sim, n *Node) (string, error) {
	t.Helper()
	resp, err := s.client(t, n).EtcdForfeitLeadership(ctx(t, n), &machine.EtcdForfeitLeadershipRequest{})
	if err != nil {
		return "", err
	}
	return resp.GetMessages()[0].GetMember(), nil
}

// leaderEvents are the etcd leadership events on the timeline, as "event node".
func leaderEvents(s sim, from int) []string {
	var out []string
	for _, e := range s.trust.Timeline()[from:] {
		if e.Event == TimelineEtcdLeader || e.Event == TimelineEtcdLeaderLost {
			out = append(out, e.Event+" "+e.Node)
		}
	}
	return out
}

// TestEtcdLeadershipStaysUntilTheLeaderGoesOrForfeits: etcd keeps its leader while it answers,
// whoever else comes and goes; EtcdForfeitLeadership on the leader hands it to the next member
// and names it, on another member it does nothing; a leader that goes down is a "leader lost"
// event and the others elect a new one while they have quorum.
func TestEtcdLeadershipStaysUntilTheLeaderGoesOrForfeits(t *testing.T) {
	s := newSim(t, 22, 3, 1)
	cp1, cp2, cp3, w := s.nodes[0], s.nodes[1], s.nodes[2], s.nodes[3]
	id := func(n *Node) uint64 { return memberID(n.address.String()) }
	if l := leaderSeenBy(t, s, cp2); l != id(cp1) {
		t.Fatalf("first leader %016x, want the founder %s", l, formatID(cp1))
	}

	// A follower that goes and comes back changes nothing.
	mark := len(s.trust.Timeline())
	cp2.Stop()
	if err := cp2.Start(); err != nil {
		t.Fatal(err)
	}
	if l := leaderSeenBy(t, s, cp3); l != id(cp1) {
		t.Fatalf("after a follower's restart the leader is %016x, want %s still", l, formatID(cp1))
	}
	if ev := leaderEvents(s, mark); len(ev) != 0 {
		t.Fatalf("a follower's restart moved the leadership: %v", ev)
	}

	// A follower's forfeit does nothing and names nobody.
	if got, err := forfeit(t, s, cp3); err != nil || got != "" {
		t.Fatalf("forfeit on a follower: %q, %v; want no member and no error", got, err)
	}
	if l := leaderSeenBy(t, s, cp3); l != id(cp1) {
		t.Fatalf("a follower's forfeit moved the leadership to %016x", l)
	}

	// The leader's forfeit hands the leadership to the next member in the list.
	got, err := forfeit(t, s, cp1)
	if err != nil || got != cp2.State().Hostname {
		t.Fatalf("forfeit on the leader: %q, %v; want %q", got, err, cp2.State().Hostname)
	}
	for _, n := range []*Node{cp1, cp2, cp3} {
		if l := leaderSeenBy(t, s, n); l != id(cp2) {
			t.Fatalf("%s sees leader %016x after the forfeit, want %s", n.address, l, formatID(cp2))
		}
	}
	// Its reboot now loses no leader.
	mark = len(s.trust.Timeline())
	cp1.Stop()
	if ev := leaderEvents(s, mark); len(ev) != 0 {
		t.Fatalf("the former leader's stop: %v", ev)
	}
	if err := cp1.Start(); err != nil {
		t.Fatal(err)
	}

	// The leader goes down: lost, and the two left elect another.
	mark = len(s.trust.Timeline())
	cp2.Stop()
	ev := leaderEvents(s, mark)
	if len(ev) != 2 || ev[0] != TimelineEtcdLeaderLost+" "+cp2.address.String() || !strings.HasPrefix(ev[1], TimelineEtcdLeader+" ") {
		t.Fatalf("the leader's stop: %v; want it lost, then another elected", ev)
	}
	if l := leaderSeenBy(t, s, cp3); l != id(cp1) {
		t.Fatalf("after the leader's stop the leader is %016x, want %s (the first healthy member)", l, formatID(cp1))
	}
	// Talos hands the leadership to the next member in the list whether it answers or not: toward
	// the stopped cp-2 the transfer times out, as etcd's MoveLeader does, and cp-1 stays leader.
	if _, err := forfeit(t, s, cp1); err == nil || !strings.Contains(err.Error(), "failed to forfeit leadership: etcdserver: request timed out, leader transfer took too long") {
		t.Fatalf("forfeit toward the stopped cp-2: %v", err)
	}
	if l := leaderSeenBy(t, s, cp3); l != id(cp1) {
		t.Fatalf("a failed forfeit moved the leadership to %016x", l)
	}
	// Quorum lost: the leader steps down.
	mark = len(s.trust.Timeline())
	cp3.Stop()
	if ev := leaderEvents(s, mark); len(ev) != 1 || ev[0] != TimelineEtcdLeaderLost+" "+cp1.address.String() {
		t.Fatalf("quorum lost: %v; want cp-1's leadership lost", ev)
	}

	// On a worker the API is not served.
	if _, err := forfeit(t, s, w); status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "etcd forfeit leadership is only available on control plane nodes") {
		t.Fatalf("forfeit on a worker: %v", err)
	}
}

// TestARebootedControlPlaneIsReadyBeforeItsEtcdMemberRejoins: with a join time, a control plane
// that booted runs and is ready while its etcd member does not answer yet: its EtcdStatus fails,
// the others' upgrade check finds it unhealthy, and once it rejoined ("etcd-joined" on the
// timeline) everything answers again.
func TestARebootedControlPlaneIsReadyBeforeItsEtcdMemberRejoins(t *testing.T) {
	s := newSimWith(t, 23, 3, 0, WithEtcdJoinTime(time.Second))
	cp1, cp2 := s.nodes[0], s.nodes[1]
	// The cluster settles first: every member rejoined after the installs' boots.
	waitJoined := func(n *Node, from int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			for _, e := range s.trust.Timeline()[from:] {
				if e.Node == n.address.String() && e.Event == TimelineEtcdJoined {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %s on the timeline within 10s", n.address, TimelineEtcdJoined)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.nodes[2].member().etcdJoining || cp2.member().etcdJoining || cp1.member().etcdJoining {
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not settle within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	mark := len(s.trust.Timeline())
	c := s.client(t, cp2)
	before := bootID(t, c, cp2)
	if err := c.Reboot(ctx(t, cp2)); err != nil {
		t.Fatal(err)
	}
	st := waitBoot(t, cp2, strings.TrimSpace(before))
	if st.Stage != "running" {
		t.Fatalf("after the boot: %+v", st)
	}
	c = s.client(t, cp2)
	if _, err := c.EtcdStatus(ctx(t, cp2)); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "has not rejoined the cluster") {
		t.Fatalf("etcd status right after the boot: %v; want Unavailable, not rejoined", err)
	}
	if _, err := s.client(t, cp1).UpgradeWithOptions(ctx(t, cp1), client.WithUpgradeImage(goodImage)); err == nil || !strings.Contains(err.Error(), "etcd member "+formatID(cp2)+" is not healthy") {
		t.Fatalf("an upgrade of cp-1 while cp-2 rejoins: %v", err)
	}
	waitJoined(cp2, mark)
	if _, err := c.EtcdStatus(ctx(t, cp2)); err != nil {
		t.Fatalf("etcd status once rejoined: %v", err)
	}
}
