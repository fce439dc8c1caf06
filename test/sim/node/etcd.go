package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	etcdres "github.com/siderolabs/talos/pkg/machinery/resources/etcd"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// etcdMember is one member of a cluster's etcd, as the members see it.
type etcdMember struct {
	node    *Node
	id      uint64
	name    string
	address string
	// serving: the machine is up and its etcd service runs; healthy: it also answers a quorum read.
	serving bool
	healthy bool
	founder bool
	// learner: added with MemberAddAsLearner and not promoted yet (members.go); it does not vote.
	learner bool
	// joining: the machine booted and runs, its member has not rejoined yet (WithEtcdJoinTime).
	joining bool
}

// etcdCluster is a bootstrapped cluster's etcd: its members as etcd lists them (members.go), the
// bootstrap node first, the others in the order they joined.
type etcdCluster struct {
	members []etcdMember
	// leaderID is the member raft elected: it stays leader until it stops answering or forfeits
	// (Trust.electLeaders); 0 before the first election and while there is none.
	leaderID uint64
}

// quorum: more than half of the voting members answer. Learners do not vote and do not count
// (etcd's raft: a learner is a non-voting member).
func (c etcdCluster) quorum() bool {
	voters, healthy := 0, 0
	for _, m := range c.members {
		if m.learner {
			continue
		}
		voters++
		if m.healthy {
			healthy++
		}
	}
	return healthy*2 > voters
}

// leader is the elected member while it is healthy and there is quorum; 0 otherwise.
func (c etcdCluster) leader() uint64 {
	if !c.quorum() {
		return 0
	}
	if m, ok := c.byID(c.leaderID); ok && m.healthy && !m.learner {
		return m.id
	}
	return 0
}

func (c etcdCluster) byID(id uint64) (etcdMember, bool) {
	for _, m := range c.members {
		if id != 0 && m.id == id {
			return m, true
		}
	}
	return etcdMember{}, false
}

func (c etcdCluster) member(n *Node) (etcdMember, bool) {
	for _, m := range c.members {
		if m.node == n {
			return m, true
		}
	}
	return etcdMember{}, false
}

// memberID is a stable etcd member id for a node address; a machine that joins again after it
// left gets a new one, as etcd gives every MemberAdd a new id (join counts the earlier joins).
func memberID(address string) uint64 {
	sum := sha256.Sum256([]byte("etcd member " + address))
	return binary.BigEndian.Uint64(sum[:8]) | 1
}

func joinedMemberID(address string, join int) uint64 {
	if join == 0 {
		return memberID(address)
	}
	return memberID(fmt.Sprintf("%s#%d", address, join))
}

// etcdView is the etcd of cluster from its member records (nil: never bootstrapped), with each
// member's health from its machine as members shows it.
func etcdView(members []member, records []etcdRecord, cluster string) (etcdCluster, bool) {
	var c etcdCluster
	if records == nil || cluster == "" {
		return c, false
	}
	for _, r := range records {
		addr := r.node.address.String()
		em := etcdMember{node: r.node, id: r.id, name: r.name, address: addr, founder: r.founder, learner: r.learner}
		for _, m := range members {
			if m.node != r.node {
				continue
			}
			// A member whose machine's data was wiped since no longer runs (recover.go).
			runs := m.etcdRuns() && m.cluster == cluster && m.etcdMemberID == r.id
			em.joining = runs && m.etcdJoining
			em.serving = runs && !m.etcdJoining
			em.healthy = em.serving && !m.etcdUnhealthy
		}
		c.members = append(c.members, em)
	}
	return c, true
}

// etcd is the etcd cluster this node belongs to; the caller holds no node lock.
func (n *Node) etcd() (etcdCluster, bool) {
	t := n.trust
	t.clusterMu.Lock()
	nodes := slices.Clone(t.nodes)
	t.clusterMu.Unlock()
	members := make([]member, len(nodes))
	for i, o := range nodes {
		members[i] = o.member()
	}
	cluster := n.member().cluster
	t.clusterMu.Lock()
	records := slices.Clone(t.etcdMembers[cluster])
	c, ok := etcdView(members, records, cluster)
	c.leaderID = t.etcdLeaders[cluster]
	t.clusterMu.Unlock()
	return c, ok
}

// electLeaders keeps each cluster's etcd leader as raft does; the caller holds clusterMu. A leader
// stays leader while it answers and its cluster has quorum, whoever else comes and goes; when it
// stops (its machine goes down, an upgrade stops its etcd, it fails) the loss is recorded on the
// timeline and, while a quorum remains, the healthy members elect another (here the first in
// member-list order: in etcd the first whose election timeout fires).
func (t *Trust) electLeaders(members []member) {
	done := map[string]bool{}
	for _, m := range members {
		if !m.controlPlane() || done[m.cluster] {
			continue
		}
		done[m.cluster] = true
		c, ok := etcdView(members, t.etcdMembers[m.cluster], m.cluster)
		if !ok {
			continue
		}
		leader := t.etcdLeaders[m.cluster]
		if lm, ok := c.byID(leader); leader != 0 && (!ok || !lm.healthy || !c.quorum()) {
			if !ok {
				lm.address = t.formerMembers[leader]
			}
			why := "its etcd stopped answering"
			switch {
			case !ok || lm.learner:
				why = "no longer a member"
			case !c.quorum() && lm.healthy:
				why = "the cluster lost quorum"
			}
			t.record(lm.address, TimelineEtcdLeaderLost, fmt.Sprintf("member %016x was leader: %s", leader, why))
			leader = 0
		}
		if leader == 0 && c.quorum() {
			for _, em := range c.members {
				if em.healthy && !em.learner {
					leader = em.id
					t.record(em.address, TimelineEtcdLeader, fmt.Sprintf("member %016x elected", leader))
					break
				}
			}
		}
		t.etcdLeaders[m.cluster] = leader
	}
}

// checkControlplane is machined's guard on the etcd APIs.
func (n *Node) checkControlplane(apiName, method string) error {
	m := n.member()
	if m.cfg == nil {
		return errMaintenanceUnimplemented(method)
	}
	if !m.controlPlane() {
		return status.Errorf(codes.Unimplemented, "%s is only available on control plane nodes", apiName)
	}
	return nil
}

var errEtcdNotRunning = status.Error(codes.Unavailable, "etcd is not running: the cluster is not bootstrapped")

// localEtcd is this control plane's running member, or the error a client to it would see.
func (n *Node) localEtcd() (etcdCluster, etcdMember, error) {
	c, ok := n.etcd()
	if !ok {
		return c, etcdMember{}, errEtcdNotRunning
	}
	m, ok := c.member(n)
	if ok && m.joining {
		return c, m, errEtcdJoining
	}
	if !ok || !m.serving {
		return c, m, errEtcdNotRunning
	}
	return c, m, nil
}

// errEtcdJoining is what a client of a member that has not rejoined since the boot sees: etcd's
// client port does not answer yet.
var errEtcdJoining = status.Error(codes.Unavailable, "etcd is starting: the member has not rejoined the cluster since the boot (dial tcp 127.0.0.1:2379: connect: connection refused)")

var errNoLeader = status.Error(codes.Unavailable, "etcdserver: no leader")

// EtcdMemberList lists the members; it needs a leader, as Talos asks with WithRequireLeader.
func (n *Node) EtcdMemberList(ctx context.Context, req *machine.EtcdMemberListRequest) (*machine.EtcdMemberListResponse, error) {
	if err := n.checkControlplane("member list", "EtcdMemberList"); err != nil {
		return nil, err
	}
	c, ok := n.etcd()
	if !ok {
		return nil, errEtcdNotRunning
	}
	if req.GetQueryLocal() {
		if m, _ := c.member(n); !m.healthy {
			return nil, errNoLeader
		}
	}
	if !c.quorum() {
		return nil, errNoLeader
	}
	out := &machine.EtcdMembers{}
	for _, m := range c.members {
		out.LegacyMembers = append(out.LegacyMembers, m.name)
		out.Members = append(out.Members, &machine.EtcdMember{
			Id:         m.id,
			Hostname:   m.name,
			PeerUrls:   []string{"https://" + m.address + ":2380"},
			ClientUrls: []string{"https://" + m.address + ":2379"},
			IsLearner:  m.learner,
		})
	}
	return &machine.EtcdMemberListResponse{Messages: []*machine.EtcdMembers{out}}, nil
}

// EtcdStatus is the local member's status.
func (n *Node) EtcdStatus(ctx context.Context, _ *emptypb.Empty) (*machine.EtcdStatusResponse, error) {
	if err := n.checkControlplane("etcd status", "EtcdStatus"); err != nil {
		return nil, err
	}
	c, m, err := n.localEtcd()
	if err != nil {
		return nil, fmt.Errorf("failed to query etcd status: %w", err)
	}
	st := &machine.EtcdMemberStatus{
		MemberId:         m.id,
		ProtocolVersion:  "3.6.4",
		StorageVersion:   "3.6.0",
		DbSize:           1 << 20,
		DbSizeInUse:      1 << 19,
		Leader:           c.leader(),
		RaftIndex:        n.trust.raftIndex(),
		RaftAppliedIndex: n.trust.raftIndex(),
		RaftTerm:         2,
	}
	if !m.healthy {
		st.Errors = []string{"etcdserver: member unhealthy (simulated fault): quorum read timed out"}
	} else if st.Leader == 0 {
		st.Errors = []string{"etcdserver: no leader"}
	}
	return &machine.EtcdStatusResponse{Messages: []*machine.EtcdStatus{{MemberStatus: st}}}, nil
}

// EtcdForfeitLeadership is machined's (Talos v1.11.5, internal/app/machined/internal/server/
// v1alpha1/v1alpha1_server.go EtcdForfeitLeadership, and internal/pkg/etcd/etcd.go
// ForfeitLeadership): with a leader required, it lists the members (refused with only one),
// asks this member's status, and when this member is the leader it moves the leadership to the
// first other member in the list, answering that member's name; when it is not the leader it
// does nothing and answers no name. The transferee is not chosen for its health: a leader
// transfer to a member that does not answer times out, as etcd's MoveLeader does. os:admin
// only (authz.go).
func (n *Node) EtcdForfeitLeadership(ctx context.Context, _ *machine.EtcdForfeitLeadershipRequest) (*machine.EtcdForfeitLeadershipResponse, error) {
	if err := n.checkControlplane("etcd forfeit leadership", "EtcdForfeitLeadership"); err != nil {
		return nil, err
	}
	c, ok := n.etcd()
	if !ok {
		return nil, fmt.Errorf("failed to create etcd client: %w", errEtcdNotRunning)
	}
	self, ok := c.member(n)
	if !ok || self.name == "" {
		// GetLocalMemberID reads the EtcdMember resource the member writes once it ran.
		return nil, status.Error(codes.NotFound, "resource EtcdMembers.etcd.talos.dev(etcd/local@undefined) doesn't exist")
	}
	if !c.quorum() {
		return nil, fmt.Errorf("failed to forfeit leadership: failed to list etcd members: %w", errNoLeader)
	}
	if len(c.members) == 1 {
		return nil, errors.New("failed to forfeit leadership: cannot forfeit leadership, only one member")
	}
	if !self.serving {
		return nil, fmt.Errorf("failed to forfeit leadership: %w", errEtcdNotRunning)
	}
	empty := &machine.EtcdForfeitLeadershipResponse{Messages: []*machine.EtcdForfeitLeadership{{}}}
	if c.leader() != self.id {
		return empty, nil
	}
	for _, m := range c.members {
		if m.id == self.id {
			continue
		}
		if !m.healthy {
			return nil, errors.New("failed to forfeit leadership: etcdserver: request timed out, leader transfer took too long")
		}
		if !n.trust.moveLeader(n.member().cluster, self.id, m.id) {
			return empty, nil // no longer the leader: nothing to do (etcd's ErrNotLeader)
		}
		n.trust.record(m.address, TimelineEtcdLeader, fmt.Sprintf("member %016x handed the leadership by %016x (forfeit)", m.id, self.id))
		return &machine.EtcdForfeitLeadershipResponse{Messages: []*machine.EtcdForfeitLeadership{{Member: m.name}}}, nil
	}
	return empty, nil
}

// moveLeader hands cluster's leadership from one member to another if from still leads.
func (t *Trust) moveLeader(cluster string, from, to uint64) bool {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	if t.etcdLeaders[cluster] != from {
		return false
	}
	t.etcdLeaders[cluster] = to
	return true
}

// raftIndex grows with everything that happened in the simulation.
func (t *Trust) raftIndex() uint64 {
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	return 1000 + uint64(len(t.timeline))*7
}

// EtcdAlarmList reports no alarms.
func (n *Node) EtcdAlarmList(ctx context.Context, _ *emptypb.Empty) (*machine.EtcdAlarmListResponse, error) {
	if err := n.checkControlplane("etcd alarm list", "EtcdAlarmList"); err != nil {
		return nil, err
	}
	if _, _, err := n.localEtcd(); err != nil {
		return nil, fmt.Errorf("failed to list etcd alarms: %w", err)
	}
	return &machine.EtcdAlarmListResponse{Messages: []*machine.EtcdAlarm{{}}}, nil
}

// validateEtcdForUpgrade is the control-plane check of machined's Upgrade: the upgrade mutex
// (which needs quorum), then Talos' ValidateForUpgrade.
func (n *Node) validateEtcdForUpgrade() error {
	c, ok := n.etcd()
	if !ok || !c.quorum() {
		return errors.New("failed to acquire upgrade mutex: error establishing etcd concurrency session: context deadline exceeded")
	}
	if len(c.members) == 2 {
		return fmt.Errorf("error validating etcd for upgrade: etcd member count(%d) is insufficient to maintain quorum if upgrade commences", len(c.members))
	}
	for _, m := range c.members {
		if m.name == "" {
			return fmt.Errorf("error validating etcd for upgrade: etcd member %016x is not started, all members must be running to perform an upgrade", m.id)
		}
		if !m.healthy {
			return fmt.Errorf("error validating etcd for upgrade: etcd member %016x is not healthy; all members must be healthy to perform an upgrade: context deadline exceeded", m.id)
		}
	}
	return nil
}

// SetEtcdHealthy is the fault "this etcd member does not answer": its quorum reads fail, it
// counts against quorum, EtcdStatus reports errors and its etcd service is unhealthy.
func (n *Node) SetEtcdHealthy(healthy bool) {
	n.mu.Lock()
	n.etcdUnhealthy = !healthy
	n.state.EtcdHealthy = healthy
	n.mu.Unlock()
	n.trust.settle()
}

// EtcdSnapshot streams a snapshot as etcd's Maintenance.Snapshot does: a bbolt database followed
// by its sha256, in 1024-byte chunks: the real etcd's when the simulation runs one for the
// cluster and it has started, else one the simulator builds from the cluster state.
func (n *Node) EtcdSnapshot(_ *machine.EtcdSnapshotRequest, stream grpc.ServerStreamingServer[common.Data]) error {
	if err := n.checkControlplane("etcd snapshot", "EtcdSnapshot"); err != nil {
		return err
	}
	c, _, err := n.localEtcd()
	if err != nil {
		return fmt.Errorf("failed reading etcd snapshot: %w", err)
	}
	// With a real control plane whose etcd runs, its own snapshot (recover.go).
	size, real, err := n.realSnapshot(func(b []byte) error { return stream.Send(&common.Data{Bytes: b}) })
	if real {
		if err != nil {
			return fmt.Errorf("failed reading etcd snapshot: %w", err)
		}
		n.trust.record(n.address.String(), TimelineSnapshot, fmt.Sprintf("%d bytes from the real etcd", size))
		return nil
	}
	data, err := n.snapshot(c)
	if err != nil {
		return fmt.Errorf("failed reading etcd snapshot: %w", err)
	}
	for off := 0; off < len(data); off += 1024 {
		if err := stream.Send(&common.Data{Bytes: data[off:min(off+1024, len(data))]}); err != nil {
			return err
		}
	}
	// Who took it: the caller's roles (authz.go), so a test sees a least-privilege backup as one.
	n.trust.record(n.address.String(), TimelineSnapshot, fmt.Sprintf("%d bytes, by %s", len(data), strings.Join(callerRoles(stream.Context()).Strings(), ",")))
	return nil
}

// snapshot builds an etcd v3 backend with a few keys from the cluster state: one revision per
// key in bucket "key" (mvccpb.KeyValue values), "meta" with the consistent index, term and
// storage version etcdutl reads.
func (n *Node) snapshot(c etcdCluster) ([]byte, error) {
	f, err := os.CreateTemp("", "talos-sim-etcd-*.db")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	_ = f.Close()
	defer os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	m := n.member()
	kvs := [][2]string{{"/registry/namespaces/default", `{"kind":"Namespace","metadata":{"name":"default"}}`},
		{"/registry/namespaces/kube-system", `{"kind":"Namespace","metadata":{"name":"kube-system"}}`},
		{"/talos/sim/cluster", clusterName(m.cfg)}}
	for _, mem := range c.members {
		kvs = append(kvs, [2]string{fmt.Sprintf("/talos/sim/members/%016x", mem.id), mem.name})
		if mem.name != "" {
			kvs = append(kvs, [2]string{"/registry/minions/" + mem.name, `{"kind":"Node","metadata":{"name":"` + mem.name + `"}}`})
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		keys, err := tx.CreateBucketIfNotExists([]byte("key"))
		if err != nil {
			return err
		}
		for i, kv := range kvs {
			rev := int64(i + 2)
			if err := keys.Put(revisionKey(rev), keyValue(kv[0], kv[1], rev)); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
		for k, v := range map[string][]byte{
			"consistent_index": u64(uint64(len(kvs)) + 10),
			"term":             u64(2),
			"storageVersion":   []byte("3.6.0"),
		} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		for _, name := range []string{"lease", "members", "members_removed", "cluster", "alarm", "auth", "authUsers", "authRoles"} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return append(raw, sum[:]...), nil
}

// revisionKey is mvcc's bucket key: 8-byte main revision, '_', 8-byte sub revision.
func revisionKey(main int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(main))
	b = append(b, '_')
	return binary.BigEndian.AppendUint64(b, 0)
}

// keyValue is an mvccpb.KeyValue in protobuf wire form.
func keyValue(key, value string, rev int64) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte(key))
	for _, f := range []struct {
		num protowire.Number
		v   int64
	}{{2, rev}, {3, rev}, {4, 1}} {
		b = protowire.AppendTag(b, f.num, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.v))
	}
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendBytes(b, []byte(value))
}

// service is one of machined's services as ServiceList and the Services resources show it.
type service struct {
	id      string
	state   string
	healthy bool
	unknown bool
	message string
	// noResource: the service is stopped, and Talos shows no Service resource for it.
	noResource bool
}

// services are the machine's system services: etcd and trustd only on control planes; etcd waits
// for the bootstrap and is healthy while its member answers.
func (n *Node) services() []service {
	c, ok := n.etcd()
	return n.servicesWith(c, ok)
}

// servicesWith is services with the cluster's etcd given (settle holds the cluster lock).
func (n *Node) servicesWith(c etcdCluster, bootstrapped bool) []service {
	m := n.member()
	if m.cfg == nil {
		return nil
	}
	running := func(id string) service {
		return service{id: id, state: "Running", healthy: true, message: "Health check successful"}
	}
	if m.servicesStopped {
		running = func(id string) service {
			return service{id: id, state: "Finished", unknown: true, message: "Service finished successfully"}
		}
	}
	out := []service{running("apid"), running("containerd"), running("cri")}
	if m.controlPlane() {
		etcd := running("etcd")
		mem, isMember := c.member(n)
		switch {
		case m.servicesStopped:
		case m.etcdLeft:
			// LeaveCluster stopped the service (internal/pkg/etcd/etcd.go).
			etcd = service{id: "etcd", state: "Finished", unknown: true, message: "Service finished successfully"}
		case m.etcdFailed != "" && (!bootstrapped || !isMember):
			// Bootstrap's etcd failed its pre-state (a recovery that failed, recover.go).
			etcd = service{id: "etcd", state: "Failed", message: m.etcdFailed}
		case m.etcdRemoved:
			// etcd refuses to start a member removed from its cluster; the service keeps failing.
			etcd = service{id: "etcd", state: "Failed", message: "Failed to run service: etcdserver: the member has been permanently removed from the cluster"}
		case !bootstrapped, !isMember:
			// The pre-state waits for the bootstrap, then for MemberAddAsLearner (which needs a leader).
			etcd = service{id: "etcd", state: "Preparing", unknown: true, message: "Running pre state"}
		case mem.joining:
			// Running, its first health check still to come: MachineStatus counts it as fine.
			etcd = service{id: "etcd", state: "Running", unknown: true, message: "Started task etcd"}
		case !mem.healthy:
			etcd.healthy, etcd.message = false, "context deadline exceeded"
		}
		out = append(out, etcd)
	}
	kubelet := running("kubelet")
	switch {
	case m.servicesStopped:
	case n.kubeletRestarting():
		// Talos restarts the kubelet service when its spec changes (staticpods.go); the stopped
		// service's resource is destroyed (v1.14.1 controllers/v1alpha1/service.go: every state
		// but RUNNING), which `talosctl upgrade-k8s` waits for (kubelet.go upgradeKubeletOnNode).
		kubelet = service{id: "kubelet", state: "Preparing", unknown: true, message: "Running pre state", noResource: true}
	case n.kubeletUnhealthy():
		// The fault SetKubeletNeverReady: the new kubelet runs and fails its health check.
		kubelet.healthy, kubelet.message = false, "Get \"http://127.0.0.1:10248/healthz\": dial tcp 127.0.0.1:10248: connect: connection refused"
	}
	out = append(out, kubelet, service{id: "machined", state: "Running", unknown: true, message: "Service started as goroutine"})
	if m.controlPlane() {
		out = append(out, running("trustd"))
	}
	return append(out, service{id: "udevd", state: "Running", unknown: true, message: `Process Process(["/sbin/udevd"]) started`})
}

// ServiceList is `talosctl service`: each service with its state, health and events, the last
// of which is the current state (what pkg/cluster/check reads).
func (n *Node) ServiceList(ctx context.Context, _ *emptypb.Empty) (*machine.ServiceListResponse, error) {
	if !n.configured() {
		return nil, errMaintenanceUnimplemented("ServiceList")
	}
	n.mu.Lock()
	booted := n.bootedAt
	n.mu.Unlock()
	out := &machine.ServiceList{}
	for _, s := range n.services() {
		events := []*machine.ServiceEvent{{Msg: "Starting service", State: "Preparing", Ts: timestamppb.New(booted)}}
		events = append(events, &machine.ServiceEvent{Msg: s.message, State: s.state, Ts: timestamppb.New(booted.Add(time.Second))})
		out.Services = append(out.Services, &machine.ServiceInfo{
			Id:     s.id,
			State:  s.state,
			Events: &machine.ServiceEvents{Events: events},
			Health: &machine.ServiceHealth{Unknown: s.unknown, Healthy: s.healthy, LastMessage: s.message, LastChange: timestamppb.New(booted.Add(time.Second))},
		})
	}
	return &machine.ServiceListResponse{Messages: []*machine.ServiceList{out}}, nil
}

// showServices keeps the Services resources and, on a control plane whose member ran, the
// EtcdMember "local" resource in step with the model.
func (n *Node) showServices(ctx context.Context, c etcdCluster, bootstrapped bool) {
	want := map[string]service{}
	for _, s := range n.servicesWith(c, bootstrapped) {
		if s.noResource {
			continue
		}
		want[s.id] = s
		res := v1alpha1.NewService(s.id)
		res.TypedSpec().Running = s.state == "Running"
		res.TypedSpec().Healthy = s.healthy
		res.TypedSpec().Unknown = s.unknown
		if err := put(ctx, n.cosi, res); err != nil {
			log.Printf("node %s: service %s: %v", n.address, s.id, err)
		}
	}
	list, err := n.cosi.List(ctx, v1alpha1.NewService("").Metadata())
	if err == nil {
		for _, r := range list.Items {
			if _, ok := want[r.Metadata().ID()]; !ok {
				_ = n.cosi.Destroy(ctx, r.Metadata())
			}
		}
	}
	if m, ok := c.member(n); ok && m.name != "" {
		res := etcdres.NewMember(etcdres.NamespaceName, etcdres.LocalMemberID)
		res.TypedSpec().MemberID = etcdres.FormatMemberID(m.id)
		if err := put(ctx, n.cosi, res); err != nil {
			log.Printf("node %s: etcd member: %v", n.address, err)
		}
	}
}
