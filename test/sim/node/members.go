package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A cluster's etcd membership, kept in Trust as etcd keeps it (Talos v1.11.5):
//   - the bootstrap node founds the cluster, a member list of one (Bootstrap);
//   - a control plane of the cluster whose etcd starts later with no data adds itself with
//     MemberAddAsLearner (internal/app/machined/pkg/system/services/etcd.go buildInitialCluster,
//     which needs a leader) and its etcd service then promotes it once it caught up
//     (promoteMember: MemberPromote retried for up to 10 min); a learner does not vote, so it does
//     not count for quorum nor become leader;
//   - a member stays listed while its machine is down; it goes only by EtcdLeaveCluster (its own
//     node, internal/pkg/etcd/etcd.go LeaveCluster: remove itself, stop etcd, delete the data) or
//     EtcdRemoveMemberByID (from another control plane, for a dead member).

// DefaultEtcdPromoteTime is how long a learner takes to catch up unless WithEtcdPromoteTime says
// otherwise: at once (the member is added as a learner and promoted in the same step).
const DefaultEtcdPromoteTime = 0

// WithEtcdPromoteTime sets how long this control plane's etcd member, once added to its cluster
// as a learner, stays a learner before its etcd service promotes it (EtcdMemberList shows
// is_learner meanwhile). 0 (the default) promotes it at once.
func WithEtcdPromoteTime(d time.Duration) Option {
	return func(o *options) { o.promoteTime = d }
}

// etcdRecord is one entry of a cluster's etcd member list.
type etcdRecord struct {
	node    *Node
	id      uint64
	name    string
	learner bool
	founder bool
}

// promoteRetryFor is how long promoteMember retries (svc/etcd.go: retry.Constant(10*time.Minute)).
const promoteRetryFor = 10 * time.Minute

// foundEtcd makes the member list of each cluster whose control plane was just bootstrapped; the
// caller holds clusterMu.
func (t *Trust) foundEtcd(members []member) {
	for _, m := range members {
		if !m.controlPlane() || !m.bootstrapped || m.cluster == "" {
			continue
		}
		if _, ok := t.etcdMembers[m.cluster]; ok {
			continue
		}
		id := m.node.addedToEtcd(m.etcdJoins)
		// No timeline entry: the bootstrap is the founding.
		t.etcdMembers[m.cluster] = []etcdRecord{{node: m.node, id: id, name: m.hostname, founder: true}}
	}
}

// addedToEtcd counts one more MemberAdd of this machine and returns the member's new id.
func (n *Node) addedToEtcd(joins int) uint64 {
	id := joinedMemberID(n.address.String(), joins)
	n.mu.Lock()
	n.etcdJoins = joins + 1
	n.etcdMemberID = id
	n.mu.Unlock()
	return id
}

// joinEtcd adds, as a learner, each running control plane of a bootstrapped cluster that is not
// a member (its etcd started with no data), while the cluster has a leader; the caller holds
// clusterMu.
func (t *Trust) joinEtcd(members []member) {
	for i, m := range members {
		if !m.etcdRuns() {
			continue
		}
		records, ok := t.etcdMembers[m.cluster]
		if !ok || slices.ContainsFunc(records, func(r etcdRecord) bool { return r.node == m.node && r.id == m.etcdMemberID }) {
			continue
		}
		c, _ := etcdView(members, records, m.cluster)
		if !c.quorum() {
			continue // MemberAddAsLearner needs a leader: the etcd service's pre-state retries
		}
		addr := m.node.address.String()
		// A machine whose data was wiped without leaving first finds its old member (same name)
		// and removes it before it adds itself (services/etcd.go addMember), unless the others
		// would lose their started quorum (etcd's strict reconfiguration check).
		kept := slices.DeleteFunc(slices.Clone(records), func(r etcdRecord) bool { return r.name == m.hostname && r.node == m.node })
		if len(kept) < len(records) {
			if rest, _ := etcdView(members, kept, m.cluster); !rest.quorum() {
				continue
			}
			for _, r := range records {
				if r.name == m.hostname && r.node == m.node {
					t.formerMembers[r.id] = addr
					t.record(addr, TimelineEtcdMemberRemoved, fmt.Sprintf("member %016x removed by its machine, which rejoins with no data", r.id))
				}
			}
			records = kept
		}
		id := m.node.addedToEtcd(m.etcdJoins)
		members[i].etcdMemberID = id
		learner := m.etcdPromote > 0
		t.etcdMembers[m.cluster] = append(slices.Clone(records), etcdRecord{node: m.node, id: id, name: m.hostname, learner: learner})
		t.record(addr, TimelineEtcdMemberAdded, fmt.Sprintf("member %016x added as learner", id))
		if !learner {
			t.record(addr, TimelineEtcdLearnerPromoted, fmt.Sprintf("member %016x promoted", id))
			continue
		}
		cluster, every, until := m.cluster, m.etcdPromote, time.Now().Add(promoteRetryFor)
		time.AfterFunc(every, func() { t.promoteLearner(cluster, id, every, until) })
	}
}

// promoteLearner is the etcd service's promoteMember: MemberPromote succeeds once the learner
// answers and the cluster has a leader; until then it is retried every period.
func (t *Trust) promoteLearner(cluster string, id uint64, every time.Duration, until time.Time) {
	t.clusterMu.Lock()
	records := t.etcdMembers[cluster]
	i := slices.IndexFunc(records, func(r etcdRecord) bool { return r.id == id })
	if i < 0 || !records[i].learner {
		t.clusterMu.Unlock()
		return
	}
	members := make([]member, len(t.nodes))
	for j, n := range t.nodes {
		members[j] = n.member()
	}
	c, _ := etcdView(members, records, cluster)
	em, _ := c.byID(id)
	if !c.quorum() || !em.serving {
		t.clusterMu.Unlock()
		if time.Now().Before(until) {
			time.AfterFunc(every, func() { t.promoteLearner(cluster, id, every, until) })
		}
		return
	}
	records = slices.Clone(records)
	records[i].learner = false
	t.etcdMembers[cluster] = records
	t.record(em.address, TimelineEtcdLearnerPromoted, fmt.Sprintf("member %016x promoted", id))
	t.clusterMu.Unlock()
	t.settle()
}

// errMemberNotFound is etcd's rpctypes.ErrMemberNotFound, as Talos' RemoveMemberByMemberID
// wraps it.
func errMemberNotFound(id uint64) error {
	return fmt.Errorf("failed to remove member %d: etcdserver: member not found", id)
}

// removeMember is etcd's MemberRemove on cluster (with a leader required, as Talos asks): the
// member leaves the list, unless the remaining voters would not have a started quorum (etcd's
// strict reconfiguration check). It returns the removed member's machine.
func (t *Trust) removeMember(cluster string, id uint64) (*Node, error) {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	records, ok := t.etcdMembers[cluster]
	if !ok {
		return nil, fmt.Errorf("failed to remove member %d: %w", id, errEtcdNotRunning)
	}
	members := make([]member, len(t.nodes))
	for j, n := range t.nodes {
		members[j] = n.member()
	}
	c, _ := etcdView(members, records, cluster)
	c.leaderID = t.etcdLeaders[cluster]
	if c.leader() == 0 {
		return nil, fmt.Errorf("failed to remove member %d: %w", id, errNoLeader)
	}
	i := slices.IndexFunc(records, func(r etcdRecord) bool { return r.id == id })
	if i < 0 {
		return nil, errMemberNotFound(id)
	}
	after := slices.Delete(slices.Clone(records), i, i+1)
	if !records[i].learner {
		rest, _ := etcdView(members, after, cluster)
		if !rest.quorum() {
			return nil, fmt.Errorf("failed to remove member %d: etcdserver: re-configuration failed due to not enough started members", id)
		}
	}
	t.etcdMembers[cluster] = after
	t.formerMembers[id] = records[i].node.address.String()
	return records[i].node, nil
}

// EtcdLeaveCluster is machined's (v1alpha1_server.go EtcdLeaveCluster, internal/pkg/etcd/etcd.go
// LeaveCluster): the node removes its own member (a leader required; NotFound, already removed,
// counts as success), then stops its etcd and deletes its data. os:admin only (authz.go).
func (n *Node) EtcdLeaveCluster(ctx context.Context, _ *machine.EtcdLeaveClusterRequest) (*machine.EtcdLeaveClusterResponse, error) {
	if err := n.checkControlplane("etcd leave", "EtcdLeaveCluster"); err != nil {
		return nil, err
	}
	if err := n.leaveEtcd("etcd leave"); err != nil {
		return nil, fmt.Errorf("failed to leave cluster: %w", err)
	}
	return &machine.EtcdLeaveClusterResponse{Messages: []*machine.EtcdLeaveCluster{{}}}, nil
}

// leaveEtcd is Client.LeaveCluster on this node.
func (n *Node) leaveEtcd(why string) error {
	n.mu.Lock()
	id := n.etcdMemberID
	n.mu.Unlock()
	if id == 0 {
		// GetLocalMemberID reads the EtcdMember resource the member writes once it ran.
		return status.Error(codes.NotFound, "resource EtcdMembers.etcd.talos.dev(etcd/local@undefined) doesn't exist")
	}
	m := n.member()
	if _, err := n.trust.removeMember(m.cluster, id); err != nil && err.Error() != errMemberNotFound(id).Error() {
		return err
	}
	n.mu.Lock()
	n.etcdLeft, n.etcdStarted, n.etcdRemoved = true, false, false
	n.mu.Unlock()
	n.trust.record(n.address.String(), TimelineEtcdLeave, fmt.Sprintf("member %016x left (%s): etcd stopped, its data deleted", id, why))
	n.trust.settle()
	return nil
}

// EtcdRemoveMemberByID is machined's (v1alpha1_server.go EtcdRemoveMemberByID): from a control
// plane, through a client to the control planes, remove a member by id with a leader required;
// etcd's "member not found" is NotFound. The removed machine's etcd, its data kept, can no longer
// run (etcd refuses to start a removed member) until its EPHEMERAL is wiped. os:admin only.
func (n *Node) EtcdRemoveMemberByID(ctx context.Context, req *machine.EtcdRemoveMemberByIDRequest) (*machine.EtcdRemoveMemberByIDResponse, error) {
	if err := n.checkControlplane("etcd remove member", "EtcdRemoveMemberByID"); err != nil {
		return nil, err
	}
	id := req.GetMemberId()
	removed, err := n.trust.removeMember(n.member().cluster, id)
	if err != nil {
		if err.Error() == errMemberNotFound(id).Error() {
			return nil, status.Error(codes.NotFound, err.Error())
		}
		return nil, fmt.Errorf("failed to remove member: %w", err)
	}
	removed.mu.Lock()
	removed.etcdRemoved = true
	removed.mu.Unlock()
	n.trust.record(removed.address.String(), TimelineEtcdMemberRemoved, fmt.Sprintf("member %016x removed by %s", id, n.address))
	n.trust.settle()
	return &machine.EtcdRemoveMemberByIDResponse{Messages: []*machine.EtcdRemoveMemberByID{{}}}, nil
}

// EtcdCluster is one cluster's etcd member list as the simulator keeps it, for a test or the
// talos-sim control endpoint's /state.
type EtcdCluster struct {
	// Cluster is the cluster's name and a short hash of its Kubernetes CA ("lab/6d9f197e8cac").
	Cluster string       `json:"cluster"`
	Members []EtcdMember `json:"members"`
}

// EtcdMember is one entry of a member list, in the list's order.
type EtcdMember struct {
	// ID is the member id in hex, as `talosctl etcd members` shows it.
	ID string `json:"id"`
	// Name is the hostname the member joined with.
	Name string `json:"name"`
	// Address is its machine's address (its peer URL's host).
	Address string `json:"address"`
	Learner bool   `json:"learner"`
}

// EtcdMembers is every bootstrapped cluster's etcd member list, by cluster.
func (t *Trust) EtcdMembers() []EtcdCluster {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	out := []EtcdCluster{}
	for _, cluster := range slices.Sorted(maps.Keys(t.etcdMembers)) {
		c := EtcdCluster{Cluster: cluster, Members: []EtcdMember{}}
		for _, r := range t.etcdMembers[cluster] {
			c.Members = append(c.Members, EtcdMember{ID: fmt.Sprintf("%016x", r.id), Name: r.name, Address: r.node.address.String(), Learner: r.learner})
		}
		out = append(out, c)
	}
	return out
}
