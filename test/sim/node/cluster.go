package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
)

// member is one node as the cluster's shared services see it at a moment.
type member struct {
	node *Node
	up   bool
	// cfg is the applied machine config; nil in maintenance.
	cfg          config.Provider
	running      string // the Talos release it runs
	cluster      string
	hostname     string
	bootstrapped bool
	// etcd: the member ran once; it is failing (fault); the upgrade stopped the services.
	etcdStarted     bool
	etcdUnhealthy   bool
	servicesStopped bool
	// etcdJoining: booted, its member not yet back in the cluster (WithEtcdJoinTime).
	etcdJoining bool
	// etcdLeft: its member left (EtcdLeaveCluster, Reset): etcd stopped, its data gone, until the
	// next boot. etcdRemoved: another member removed it while its data stayed: etcd fails at each
	// start until EPHEMERAL is wiped (members.go).
	etcdLeft, etcdRemoved bool
	// etcdPromote is how long this machine's etcd, once added as a learner, takes to catch up.
	etcdPromote time.Duration
	etcdJoins   int
	// etcdMemberID is the member its etcd data belongs to (0: none, EPHEMERAL wiped).
	etcdMemberID uint64
	etcdFailed   string
}

// etcdRuns: the machine's etcd service runs (a control plane, up, services not stopped, not left,
// its pre-state not failed).
func (m member) etcdRuns() bool {
	return m.controlPlane() && m.up && !m.servicesStopped && !m.etcdLeft && !m.etcdRemoved && m.etcdFailed == ""
}

func (m member) controlPlane() bool { return m.cfg != nil && m.cfg.Machine().Type().IsControlPlane() }

// clusterKey names the cluster a config joins: its name and its Kubernetes CA, the identity of the
// API server its kubelet trusts. Two clusters that only share a name stay apart.
func clusterKey(cfg config.Provider) string {
	sum := sha256.Sum256(clusterCACert(cfg))
	return clusterName(cfg) + "/" + hex.EncodeToString(sum[:6])
}

func (n *Node) member() member {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := member{node: n, up: n.state.Up, cfg: n.cfg, running: n.state.TalosVersion, hostname: n.state.Hostname, bootstrapped: n.state.Bootstrapped,
		etcdStarted: n.etcdStarted, etcdUnhealthy: n.etcdUnhealthy, servicesStopped: n.servicesStopped, etcdJoining: n.etcdJoining,
		etcdLeft: n.etcdLeft, etcdRemoved: n.etcdRemoved, etcdPromote: n.etcdPromote, etcdJoins: n.etcdJoins,
		etcdMemberID: n.etcdMemberID, etcdFailed: n.etcdFailed}
	if n.cfg != nil {
		m.cluster = clusterKey(n.cfg)
	}
	return m
}

func (t *Trust) join(n *Node) {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	t.nodes = append(t.nodes, n)
}

// settle brings every node up to date with what its cluster decides after any node changed
// (an apply, a bootstrap, a stop or start): which control plane holds each VIP, and the Node
// objects the kubelets register and Talos' node-apply controllers update.
func (t *Trust) settle() {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	members := make([]member, len(t.nodes))
	for i, n := range t.nodes {
		members[i] = n.member()
	}
	// etcd exists once a control plane of the cluster was bootstrapped; it keeps its data when
	// that machine stops.
	// The bootstrap node founds the member list (members.go); it outlives that machine, but not
	// the wipe of every member's data (recover.go).
	t.loseEtcd(members)
	t.foundEtcd(members)
	bootstrapped := map[string]bool{}
	for cluster := range t.etcdMembers {
		bootstrapped[cluster] = true
	}
	// With a real control plane, a cluster's etcd and API server start (after a delay) on the
	// control plane that was bootstrapped.
	if t.controlPlane != nil && !t.closed {
		for _, m := range members {
			if _, started := t.realAPIs[m.cluster]; !started && m.controlPlane() && m.bootstrapped {
				t.startRealAPI(m)
			}
		}
	}
	vips, held := electVIPs(members, bootstrapped)
	for i, m := range members {
		var kube *KubernetesNode
		if api, ok := t.realAPIs[m.cluster]; ok {
			kube = t.realKubelet(api, m, bootstrapped[m.cluster])
		} else {
			kube = t.runKubelet(m, bootstrapped[m.cluster])
		}
		m.node.mu.Lock()
		m.node.state.VIP, m.node.state.KubernetesNode = vips[i], kube
		m.node.mu.Unlock()
		if err := m.node.showVIP(context.Background(), held[i]); err != nil {
			log.Printf("node %s: VIP address resource: %v", m.node.address, err)
		}
	}
	t.syncFrontends(members)
	// etcd: a control plane's member has started once its machine ran in a bootstrapped cluster;
	// then every machine shows its services and etcd member.
	for _, m := range members {
		if m.controlPlane() && m.up && !m.servicesStopped && bootstrapped[m.cluster] && !m.etcdStarted {
			m.node.mu.Lock()
			m.node.etcdStarted = true
			m.node.mu.Unlock()
		}
	}
	for i := range members {
		members[i] = members[i].node.member()
	}
	t.joinEtcd(members)
	t.electLeaders(members)
	for _, m := range members {
		c, ok := etcdView(members, t.etcdMembers[m.cluster], m.cluster)
		c.leaderID = t.etcdLeaders[m.cluster]
		m.node.showServices(context.Background(), c, ok)
	}
}

// electVIPs is the etcd election of Talos' VIP operator: per cluster and address, among the
// running control planes whose config puts the VIP on one of their links, once etcd runs, the
// first in the simulation's node order holds it. It returns each member's VIP status (nil when its
// config declares none) and, for the holders, the address resource to show.
func electVIPs(members []member, bootstrapped map[string]bool) ([]*VIPStatus, []*network.AddressStatus) {
	vips := make([]*VIPStatus, len(members))
	held := make([]*network.AddressStatus, len(members))
	holders := map[string]string{}
	for i, m := range members {
		vip, target := resolveVIP(m.cfg, m.node.links)
		vips[i] = vip
		switch {
		case vip == nil || target == nil:
			continue
		case !m.controlPlane():
			vip.Reason = "not a control plane: the VIP is elected through etcd, which runs on control planes"
			continue
		case !m.up:
			vip.Reason = "node is down"
			continue
		case !bootstrapped[m.cluster]:
			vip.Reason = "cluster not bootstrapped: the VIP is elected through etcd"
			continue
		}
		addr, err := vipAddress(vip, target)
		if err != nil {
			vip.Reason = err.Error()
			continue
		}
		key := m.cluster + " " + addr.TypedSpec().Address.Addr().String()
		if holder, taken := holders[key]; taken {
			vip.Reason = fmt.Sprintf("not the VIP holder: %s holds it", holder)
			continue
		}
		holders[key] = m.node.address.String()
		vip.Up, held[i] = true, addr
	}
	return vips, held
}
