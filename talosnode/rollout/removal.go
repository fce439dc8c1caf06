package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/talosnode/node"
)

// Taking machines out of the cluster, as Talos' own guide does it (website/content/v1.11/
// talos-guides/howto/scaling-down.md: `talosctl reset`, then `kubectl delete node`) and as Cluster
// API's Talos control-plane provider scales down (forfeit leadership, leave etcd, delete the Node):
//
//   - a worker: cordon and drain its Node through the Eviction API (PodDisruptionBudgets honoured,
//     bounded by the drain timeout), Reset{graceful, reboot, wipe STATE and EPHEMERAL} (Talos
//     cordons and drains again, stops the kubelet, wipes and reboots into maintenance mode), then
//     delete its Node. One that does not answer: the Kubernetes side only, the reset skipped with a
//     warning.
//   - a control plane: the health and etcd gates, a drain, a verified snapshot from a member that
//     stays, leadership forfeited if it leads, EtcdLeaveCluster on the node (Talos removes the
//     member, stops etcd and deletes its data: internal/pkg/etcd/etcd.go LeaveCluster), the member
//     list checked against the control planes that stay, the reset, the Node deleted. One that
//     does not answer: its member removed by id from a member that stays (EtcdRemoveMemberByID,
//     "only for a broken member" in talosctl's help).
//   - a replaced machine (the stack declares its name at another address): its etcd member and the
//     machine go, but not the Node, whose name the new machine now registers; its reset is not
//     graceful, since Talos' graceful reset would cordon and drain that Node.

// Remove is the phase of taking a machine out of the cluster; Join of awaiting a new control
// plane's etcd membership.
const (
	Remove Phase = "removal"
	Join   Phase = "join"
)

// WipedPartitions are what a removed machine's reset wipes: its config and identity (STATE) and
// its data (EPHEMERAL), as `talosctl reset --system-labels-to-wipe STATE --system-labels-to-wipe
// EPHEMERAL` does; it then boots into maintenance mode, ready to be declared again.
var WipedPartitions = []string{"STATE", "EPHEMERAL"}

// confirmDown bounds the wait that tells a machine that is down from one that is slow to answer.
const confirmDown = time.Minute

var removalDrain = drainReason{why: "it is being removed from the cluster", before: "its reset", untouched: "nothing was reset"}

// membership takes the leaving machines out and awaits the new control planes, before any other
// change: first the members of leaving control planes that do not answer (removed by id, so the
// new ones join a cluster that counts only live members), then the new control planes until etcd
// has promoted each, then the leaving workers, then the leaving control planes one at a time.
func (r *runner) membership(ctx context.Context, declared []Node, leaving []Node) ([]Node, error) {
	for _, n := range declared {
		if n.New && n.ControlPlane {
			r.joining = append(r.joining, n)
		}
	}
	var live []Node
	for _, n := range leaving {
		if !n.ControlPlane {
			continue
		}
		if r.answers(ctx, n) {
			live = append(live, n)
			continue
		}
		if err := r.removeDeadControlPlane(ctx, n); err != nil {
			return nil, err
		}
	}
	declared = slices.Clone(declared)
	for i, n := range declared {
		if !n.New || !n.ControlPlane {
			continue
		}
		r.joining = slices.DeleteFunc(r.joining, func(j Node) bool { return j.Target == n.Target })
		if err := r.awaitJoined(ctx, n); err != nil {
			return nil, err
		}
		declared[i].New = false
		r.members = append(r.members, declared[i])
	}
	for _, n := range leaving {
		if !n.ControlPlane {
			if err := r.removeWorker(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	for _, n := range live {
		if err := r.removeControlPlane(ctx, n); err != nil {
			return nil, err
		}
	}
	return declared, nil
}

// answers is whether the machine answers over mutual TLS within confirmDown (or the health
// timeout, when shorter): false confirms it down.
func (r *runner) answers(ctx context.Context, n Node) bool {
	poll := r.opts
	poll.HealthTimeout = min(r.opts.HealthTimeout, confirmDown)
	seen, err := (&runner{opts: poll}).poll(ctx, fmt.Sprintf("%s: %s: is it down?", n.Target.Where(), Remove), func(ctx context.Context) (bool, string, error) {
		if _, err := node.ReadAvailable(ctx, n.Target, r.opts.Creds()); err != nil {
			return false, node.Describe(err), nil
		}
		return true, "", nil
	})
	if err != nil {
		r.log("%s: does not answer over mutual TLS within %s (%s): taken for down", n.Target, poll.HealthTimeout, seen)
		return false
	}
	return true
}

// removeWorker takes a worker out: drain, reset, Node deleted (the Kubernetes side only when it
// does not answer).
func (r *runner) removeWorker(ctx context.Context, n Node) error {
	alive := r.answers(ctx, n)
	r.log("%s: leaving the cluster%s (%s)", n.Target, map[bool]string{false: ", does not answer"}[alive], leavingSteps(n, alive, r.opts.Kubernetes))
	name := n.Target.Name
	if alive {
		if nm, err := r.kubeNodeName(ctx, n); err == nil && nm != "" {
			name = nm
		}
	}
	if err := r.kubeBefore(ctx, n, name, alive); err != nil {
		return err
	}
	if alive {
		if err := r.reset(ctx, n); err != nil {
			return err
		}
	} else {
		r.log("WARNING: %s: does not answer: its reset is skipped; wipe or retire the machine by hand, it still carries the cluster's config", n.Target)
	}
	if err := r.kubeAfter(ctx, n, name); err != nil {
		return err
	}
	r.record(r.removed(n, alive), "")
	return nil
}

// removeControlPlane takes a control plane that answers out of the cluster.
func (r *runner) removeControlPlane(ctx context.Context, n Node) error {
	r.log("%s: leaving the cluster (%s)", n.Target, leavingSteps(n, true, r.opts.Kubernetes))
	name := n.Target.Name
	if nm, err := r.kubeNodeName(ctx, n); err == nil && nm != "" {
		name = nm
	}
	if !n.Replaced {
		if _, err := r.waitHealthy(ctx, n, PreCheck); err != nil {
			return err
		}
		if err := r.waitEtcd(ctx, n, PreCheck); err != nil {
			return err
		}
	}
	if err := r.kubeBefore(ctx, n, name, true); err != nil {
		return err
	}
	peer, err := r.snapshotFromPeer(ctx, n)
	if err != nil {
		return err
	}
	member, err := r.memberOf(ctx, peer, n)
	if err != nil {
		return err
	}
	if member == nil {
		r.log("%s: no longer an etcd member", n.Target)
	} else {
		if err := r.forfeitLeadership(ctx, n, Remove); err != nil {
			return err
		}
		c, err := node.Dial(ctx, n.Target, r.opts.Creds())
		if err != nil {
			return &Error{Node: n.Target, Phase: Remove, Expected: "a client for the node", Seen: err.Error()}
		}
		callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
		err = c.EtcdLeaveCluster(callCtx, &machine.EtcdLeaveClusterRequest{})
		cancel()
		c.Close() //nolint:errcheck
		if err != nil {
			return &Error{Node: n.Target, Phase: Remove, Expected: fmt.Sprintf("the node to leave etcd (member %x)", member.GetId()), Seen: node.Describe(err)}
		}
		r.log("%s: left etcd (member %x)", n.Target, member.GetId())
	}
	if err := r.dropMember(ctx, n, peer); err != nil {
		return err
	}
	if err := r.reset(ctx, n); err != nil {
		return err
	}
	if err := r.kubeAfter(ctx, n, name); err != nil {
		return err
	}
	r.record(r.removed(n, true), "")
	return nil
}

// removeDeadControlPlane removes the etcd member of a control plane that does not answer, by id
// from a member that stays, and its Node.
func (r *runner) removeDeadControlPlane(ctx context.Context, n Node) error {
	r.log("%s: leaving the cluster, does not answer (%s)", n.Target, leavingSteps(n, false, r.opts.Kubernetes))
	peer, err := r.snapshotFromPeer(ctx, n)
	if err != nil {
		return err
	}
	member, err := r.memberOf(ctx, peer, n)
	if err != nil {
		return err
	}
	if member == nil {
		r.log("%s: no longer an etcd member", n.Target)
	} else {
		c, err := node.Dial(ctx, peer.Target, r.opts.Creds())
		if err != nil {
			return &Error{Node: n.Target, Phase: Remove, Expected: "a client for " + peer.Target.String(), Seen: err.Error()}
		}
		callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
		err = c.EtcdRemoveMemberByID(callCtx, &machine.EtcdRemoveMemberByIDRequest{MemberId: member.GetId()})
		cancel()
		c.Close() //nolint:errcheck
		if err != nil && status.Code(err) != codes.NotFound {
			return &Error{Node: n.Target, Phase: Remove, Expected: fmt.Sprintf("%s to remove the etcd member %x of the node, which does not answer", peer.Target, member.GetId()),
				Seen: node.Describe(err)}
		}
		r.log("%s: does not answer: its etcd member %x removed through %s", n.Target, member.GetId(), peer.Target)
	}
	if err := r.dropMember(ctx, n, peer); err != nil {
		return err
	}
	if err := r.kubeBefore(ctx, n, n.Target.Name, false); err != nil {
		return err
	}
	r.log("WARNING: %s: does not answer: its reset is skipped; wipe or retire the machine by hand before it comes back, it still carries the cluster's config", n.Target)
	if err := r.kubeAfter(ctx, n, n.Target.Name); err != nil {
		return err
	}
	r.record(r.removed(n, false), "")
	return nil
}

// LeavingSteps says what taking the node out does, for the log, the changes and a preview's plan.
func LeavingSteps(n Node, alive bool) string {
	return leavingSteps(n, alive, true)
}

// leavingSteps is LeavingSteps; without kubernetes (kubernetesChecks off) the Node is left alone.
func leavingSteps(n Node, alive, kubernetes bool) string {
	var steps []string
	switch {
	case n.Replaced && n.ControlPlane && alive:
		return "replaced at another address: leaves etcd, reset wiping " + strings.Join(WipedPartitions, " and ") + "; its Node name stays with the new machine"
	case n.Replaced && n.ControlPlane:
		return "replaced at another address: its etcd member removed by id from a control plane that stays; its Node name stays with the new machine"
	case n.Replaced && alive:
		return "replaced at another address: reset wiping " + strings.Join(WipedPartitions, " and ") + "; its Node name stays with the new machine"
	case n.Replaced:
		return "replaced at another address: nothing to do; its Node name stays with the new machine"
	case n.ControlPlane && alive:
		steps = []string{"health and etcd gates", "cordon", "drain (PodDisruptionBudgets honoured, bounded by drainTimeout)", "verified etcd snapshot", "forfeit etcd leadership if it leads", "leave etcd", "graceful reset wiping " + strings.Join(WipedPartitions, " and "), "Node deleted"}
	case n.ControlPlane:
		steps = []string{"verified etcd snapshot", "its member removed by id from a control plane that stays", "cordon", "pods evicted", "reset skipped", "Node deleted"}
	case alive:
		steps = []string{"cordon", "drain (PodDisruptionBudgets honoured, bounded by drainTimeout)", "graceful reset wiping " + strings.Join(WipedPartitions, " and "), "Node deleted"}
	default:
		steps = []string{"cordon", "pods evicted", "reset skipped", "Node deleted"}
	}
	if !kubernetes {
		steps = slices.DeleteFunc(steps, func(s string) bool {
			return s == "cordon" || s == "pods evicted" || s == "Node deleted" || strings.HasPrefix(s, "drain")
		})
		steps = append(steps, "its Node left alone (kubernetesChecks off)")
	}
	return strings.Join(steps, ", ")
}

// removed is the change line of a machine taken out.
func (r *runner) removed(n Node, alive bool) string {
	return fmt.Sprintf("%s: removed (%s)", n.Target.Name, leavingSteps(n, alive, r.opts.Kubernetes))
}

// kubeBefore cordons and drains the leaving node's Node (a Node that does not answer: until each
// pod is evicted, as its kubelet will never confirm their end). Nothing for a replaced machine, or
// without the cluster's Kubernetes API.
func (r *runner) kubeBefore(ctx context.Context, n Node, name string, alive bool) error {
	if n.Replaced || !r.opts.Kubernetes {
		return nil
	}
	_, err := r.drainNamed(ctx, n, name, removalDrain, !alive)
	return err
}

// kubeAfter deletes the leaving node's Node; the pod garbage collector deletes what was left on it.
func (r *runner) kubeAfter(ctx context.Context, n Node, name string) error {
	switch {
	case n.Replaced:
		return nil
	case !r.opts.Kubernetes:
		r.log("%s: kubernetesChecks is off: Node %s stays; `kubectl delete node %s` removes it", n.Target, name, name)
		return nil
	}
	k, err := r.kube(ctx)
	if err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: "an admin kubeconfig to delete Node " + name, Seen: err.Error()}
	}
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: deleting Node %s", n.Target.Where(), Remove, name), func(ctx context.Context) (bool, string, error) {
		err := k.DeleteNode(ctx, r.apiServers(), name)
		switch {
		case err == nil:
			return true, "", nil
		case isAPIError(err):
			return false, err.Error(), err
		}
		return false, err.Error(), nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: "Node " + name + " deleted", Seen: seen}
	}
	r.log("%s: Node %s deleted", n.Target, name)
	return nil
}

// reset asks Talos to reset the machine, wiping WipedPartitions and rebooting into maintenance
// mode, and waits until it no longer answers as a member of the cluster (a new boot, or no
// answer over mutual TLS). Graceful unless the machine was replaced (the graceful sequence would
// cordon and drain the Node its successor registers under the same name).
func (r *runner) reset(ctx context.Context, n Node) error {
	before, err := r.bootID(ctx, n)
	if err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: "the node's boot id before its reset", Seen: node.Describe(err)}
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: "a client for the node", Seen: err.Error()}
	}
	defer c.Close() //nolint:errcheck
	req := ResetRequest(!n.Replaced)
	callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	if err := c.ResetGeneric(callCtx, req); err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: fmt.Sprintf("Talos to accept the reset (graceful %t, wiping %s)", req.GetGraceful(), strings.Join(WipedPartitions, " and ")),
			Seen: node.Describe(err)}
	}
	r.log("%s: reset (graceful %t, wiping %s, reboot into maintenance mode)", n.Target, req.GetGraceful(), strings.Join(WipedPartitions, " and "))
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for the reset to take it down", n.Target.Where(), Remove), func(ctx context.Context) (bool, string, error) {
		id, err := r.bootID(ctx, n)
		switch {
		case err != nil, id != before:
			return true, "", nil
		}
		return false, "still on boot " + id, nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: "the machine down for its reset within " + r.opts.HealthTimeout.String(), Seen: seen}
	}
	return nil
}

// ResetRequest is the reset of a machine leaving the cluster.
func ResetRequest(graceful bool) *machine.ResetRequest {
	req := &machine.ResetRequest{Graceful: graceful, Reboot: true}
	for _, label := range WipedPartitions {
		req.SystemPartitionsToWipe = append(req.SystemPartitionsToWipe, &machine.ResetPartitionSpec{Label: label, Wipe: true})
	}
	return req
}

// staying are the control planes that stay members while n leaves.
func (r *runner) staying(n Node) []Node {
	var out []Node
	for _, m := range r.members {
		if m.Target != n.Target && !m.Leaving {
			out = append(out, m)
		}
	}
	return out
}

// snapshotFromPeer takes a verified etcd snapshot from the first control plane that stays and
// answers, and returns that control plane: the one that is asked about the members from then on.
func (r *runner) snapshotFromPeer(ctx context.Context, n Node) (Node, error) {
	var errs []string
	for _, m := range r.staying(n) {
		path, err := r.opts.Snapshots.Take(ctx, m.Target, r.opts.Creds(), time.Now())
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", m.Target.Name, err))
			continue
		}
		r.log("%s: etcd snapshot %s (from %s) before it leaves etcd", n.Target, path, m.Target.Name)
		r.record("", path)
		return m, nil
	}
	if len(errs) == 0 {
		errs = append(errs, "no control plane stays")
	}
	return Node{}, &Error{Node: n.Target, Phase: Snapshot, Expected: "a verified etcd snapshot from a control plane that stays", Seen: strings.Join(errs, "; ")}
}

// memberList is the etcd member list as peer's etcd sees it.
func (r *runner) memberList(ctx context.Context, peer Node) ([]*machine.EtcdMember, error) {
	c, err := node.Dial(ctx, peer.Target, r.opts.Creds())
	if err != nil {
		return nil, err
	}
	defer c.Close() //nolint:errcheck
	callCtx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	list, err := c.EtcdMemberList(callCtx, &machine.EtcdMemberListRequest{QueryLocal: true})
	if err != nil {
		return nil, err
	}
	if len(list.GetMessages()) == 0 {
		return nil, errors.New("no member list in the answer")
	}
	return list.GetMessages()[0].GetMembers(), nil
}

// memberOf is n's etcd member in peer's list, nil when there is none.
func (r *runner) memberOf(ctx context.Context, peer, n Node) (*machine.EtcdMember, error) {
	list, err := r.memberList(ctx, peer)
	if err != nil {
		return nil, &Error{Node: n.Target, Phase: Remove, Expected: "the etcd member list from " + peer.Target.String(), Seen: node.Describe(err)}
	}
	for _, m := range list {
		if IsMemberOf(m, n) {
			return m, nil
		}
	}
	return nil, nil
}

// IsMemberOf says whether an etcd member is the node's: a peer URL on its address, or (unless
// another machine now carries its name) its name.
func IsMemberOf(m *machine.EtcdMember, n Node) bool {
	h := host(n.Target.Address)
	for _, u := range m.GetPeerUrls() {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() == h {
			return true
		}
	}
	return !n.Replaced && m.GetHostname() != "" && m.GetHostname() == n.Target.Name
}

// MemberProblems says how an etcd member list differs from the control planes expected: "" when
// each has a started voting member and no other voting member is listed. Learners are not
// counted: a learner is a member still catching up (Talos promotes it; svc/etcd.go
// promoteMember).
// The members of joining (new control planes not awaited yet) are neither expected nor extra.
func MemberProblems(list []*machine.EtcdMember, expected, joining []Node) string {
	var problems, extra []string
	found := map[int]bool{}
	for i, mine := range match(list, expected, joining) {
		m := list[i]
		switch {
		case mine == skipped:
		case mine == unaccounted:
			extra = append(extra, describeMember(m))
		default:
			found[mine] = true
			if m.GetHostname() == "" {
				problems = append(problems, expected[mine].Target.Name+": member not started")
			}
		}
	}
	var missing []string
	for i, n := range expected {
		if !found[i] {
			missing = append(missing, n.Target.Name)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "no voting member for "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		problems = append(problems, "members no control plane accounts for: "+strings.Join(extra, ", "))
	}
	return strings.Join(problems, "; ")
}

const (
	skipped     = -2
	unaccounted = -1
)

// match is, for each member of list, the index of the expected control plane it is the member
// of, unaccounted when none, skipped for a learner or a member of joining.
func match(list []*machine.EtcdMember, expected, joining []Node) []int {
	out := make([]int, len(list))
	found := map[int]bool{}
	for j, m := range list {
		out[j] = unaccounted
		if m.GetIsLearner() || slices.ContainsFunc(joining, func(n Node) bool { return IsMemberOf(m, n) }) {
			out[j] = skipped
			continue
		}
		for i, n := range expected {
			if !found[i] && IsMemberOf(m, n) {
				out[j], found[i] = i, true
				break
			}
		}
	}
	return out
}

// Unaccounted are the voting etcd members of list no expected control plane accounts for
// (learners, members still catching up, aside): a machine the stack does not declare, or the
// member a replaced or removed machine left behind.
func Unaccounted(list []*machine.EtcdMember, expected []Node) []*machine.EtcdMember {
	var out []*machine.EtcdMember
	for i, mine := range match(list, expected, nil) {
		if mine == unaccounted {
			out = append(out, list[i])
		}
	}
	return out
}

// MemberHost is the host of an etcd member's first peer URL ("" without one).
func MemberHost(m *machine.EtcdMember) string {
	for _, u := range m.GetPeerUrls() {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			return pu.Hostname()
		}
	}
	return ""
}

// MemberList is the etcd member list as the first of the control planes that answers reports it.
func MemberList(ctx context.Context, controlPlanes []Node, creds node.Credentials) ([]*machine.EtcdMember, error) {
	var errs []string
	for _, n := range controlPlanes {
		list, err := (&runner{opts: Options{Credentials: creds}}).memberList(ctx, n)
		if err == nil {
			return list, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %s", n.Target, node.Describe(err)))
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func describeMember(m *machine.EtcdMember) string {
	name := m.GetHostname()
	if name == "" {
		name = "not started"
	}
	return fmt.Sprintf("%x (%s, %s)", m.GetId(), name, strings.Join(m.GetPeerUrls(), " "))
}

// dropMember takes n off the members the gates expect and waits until peer lists exactly them.
func (r *runner) dropMember(ctx context.Context, n Node, peer Node) error {
	r.members = slices.DeleteFunc(r.members, func(m Node) bool { return m.Target == n.Target })
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for the etcd member list to be the %d control planes that stay", n.Target.Where(), Remove, len(r.members)),
		func(ctx context.Context) (bool, string, error) {
			list, err := r.memberList(ctx, peer)
			if err != nil {
				return false, node.Describe(err), nil
			}
			problems := MemberProblems(list, r.members, r.joining)
			return problems == "", problems, nil
		})
	if err != nil {
		return &Error{Node: n.Target, Phase: Remove, Expected: fmt.Sprintf("the etcd members listed by %s to be %s", peer.Target.Name, nodeNames(r.members)), Seen: seen}
	}
	r.log("%s: etcd members are now %s", n.Target, nodeNames(r.members))
	return nil
}

func nodeNames(nodes []Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Target.Name)
	}
	return strings.Join(out, ", ")
}

// awaitJoined waits until a new control plane answers and etcd has promoted its member: started,
// a voting member, as its own etcd reports.
func (r *runner) awaitJoined(ctx context.Context, n Node) error {
	if _, err := r.waitHealthy(ctx, n, Join); err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			rerr.Expected = "the new control plane installed by its config apply, answering over mutual TLS, running and ready within " + r.opts.HealthTimeout.String()
		}
		return err
	}
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for etcd to promote its member", n.Target.Where(), Join), func(ctx context.Context) (bool, string, error) {
		list, err := r.memberList(ctx, n)
		if err != nil {
			return false, node.Describe(err), nil
		}
		for _, m := range list {
			if !IsMemberOf(m, n) {
				continue
			}
			switch {
			case m.GetIsLearner():
				return false, fmt.Sprintf("member %x is a learner", m.GetId()), nil
			case m.GetHostname() == "":
				return false, fmt.Sprintf("member %x is not started", m.GetId()), nil
			}
			return true, "", nil
		}
		return false, "not in the member list", nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: Join, Expected: "the new control plane a started, promoted (voting) etcd member within " + r.opts.HealthTimeout.String(), Seen: seen}
	}
	r.log("%s: new control plane: a promoted etcd member, counted from now on", n.Target)
	return nil
}
