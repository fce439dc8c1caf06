package rollout_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// kinds are the timeline entries of the given kinds after mark, as "node:kind".
func (c *realCluster) kinds(mark int, kinds ...string) []string {
	var out []string
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if slices.Contains(kinds, e.Event) {
			out = append(out, c.name(e.Node)+":"+e.Event)
		}
	}
	return out
}

func (c *realCluster) name(address string) string {
	for _, n := range c.nodes {
		if strings.Split(n.Target.Address, ":")[0] == address {
			return n.Target.Name
		}
	}
	return address
}

// awaitMaintenance waits until a reset machine is back up in maintenance mode.
func (c *realCluster) awaitMaintenance(t *testing.T, n *simnode.Node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s := n.State(); !s.Up || s.Configured || s.Stage != "maintenance"; s = n.State() {
		if time.Now().After(deadline) {
			t.Fatalf("%s after its reset: up %t, configured %t, stage %s; want maintenance mode", n.Addr(), s.Up, s.Configured, s.Stage)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A worker that answers leaves through the Kubernetes API (cordon, a drain its budget paces),
// then Talos' graceful reset wipes it into maintenance mode and its Node is deleted; a rerun has
// nothing left to do.
func TestARemovedWorkerIsDrainedResetIntoMaintenanceAndItsNodeDeleted(t *testing.T) {
	c := newRealCluster(t, 44)
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k, base := c.admin(t, ctx)
	app := newWebApp(t, ctx, k, base)
	app.budget(t, ctx, 1, 1)
	cctx, stop := context.WithCancel(ctx)
	wait := app.controllers(cctx)
	defer func() { stop(); wait() }()

	leaving := c.nodes[3]
	leaving.Leaving = true
	declared := append(slices.Clone(c.nodes[:3]), leaving)
	mark := len(c.lab.Trust.Timeline())
	var log logLines
	result, err := rollout.Run(ctx, declared, c.options(t, log.add))
	if err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	if len(result.Changes) != 1 || !strings.HasPrefix(result.Changes[0], "worker-1: removed (cordon, drain") {
		t.Errorf("changes %q", result.Changes)
	}
	if _, err := k.Send(ctx, base, http.MethodGet, "/api/v1/nodes/worker-1", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Node worker-1 after the removal: %v, want not found", err)
	}
	c.awaitMaintenance(t, c.sim[3])
	// The rollout drained it before the reset: Talos' own drain found nothing left to evict.
	got := c.kinds(mark, simnode.TimelineReset, simnode.TimelineDrain, simnode.TimelineWipe, simnode.TimelineDown, simnode.TimelineApply, simnode.TimelineUpgrade)
	if want := []string{"worker-1:reset", "worker-1:drain", "worker-1:wipe", "worker-1:down"}; !slices.Equal(got[:min(len(got), 4)], want) {
		t.Errorf("timeline %v, want %v first and no other node touched", got, want)
	}
	for _, e := range got[4:] {
		if !strings.HasPrefix(e, "worker-1:") {
			t.Errorf("another node touched: %v", got)
		}
	}
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if e.Event == simnode.TimelineDrain && !strings.HasSuffix(e.Detail, "evicted ") {
			t.Errorf("Talos' drain still found pods to evict: %s", e.Detail)
		}
	}
	text := log.text()
	for _, name := range []string{"web-1", "web-2"} {
		if !strings.Contains(text, "evicted default/"+name) {
			t.Errorf("no eviction of %s in the log:\n%s", name, text)
		}
	}
	if i, j := strings.Index(text, "evicted default/"), strings.Index(text, "worker-1 ("+leaving.Target.Address+"): reset"); i < 0 || j < 0 || i > j {
		t.Errorf("the drain did not come before the reset:\n%s", text)
	}
	if got := app.pods(t, ctx); len(got["worker-1"]) != 0 || len(got["cp-2"]) != 2 {
		t.Errorf("running pods %v, want the two replacements on cp-2", got)
	}
	if !strings.Contains(text, "refused by PodDisruptionBudget default/web") {
		t.Errorf("the budget did not pace the drain:\n%s", text)
	}

	// The stack no longer records worker-1: a rerun over what it declares changes nothing.
	mark = len(c.lab.Trust.Timeline())
	result, err = rollout.Run(ctx, slices.Clone(c.nodes[:3]), c.options(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Changes) != 0 {
		t.Errorf("rerun changes %q", result.Changes)
	}
	if got := c.kinds(mark, simnode.TimelineReset, simnode.TimelineApply, simnode.TimelineUpgrade, simnode.TimelineDown, simnode.TimelineEtcdLeave); len(got) > 0 {
		t.Errorf("rerun touched %v", got)
	}
}

// members are the etcd member list as cp-1 reports it, "name" or "name (learner)", sorted.
func (c *realCluster) members(t *testing.T, ctx context.Context, from *simnode.Node) []string {
	t.Helper()
	list, err := c.lab.Client(t, from).EtcdMemberList(ctx, &machine.EtcdMemberListRequest{QueryLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range list.GetMessages()[0].GetMembers() {
		name := m.GetHostname()
		if m.GetIsLearner() {
			name += " (learner)"
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// to is the declared nodes moved to another release (its installer in their config too).
func (c *realCluster) to(t *testing.T, nodes []rollout.Node, version string) []rollout.Node {
	t.Helper()
	out := slices.Clone(nodes)
	for i := range out {
		out[i].TalosVersion, out[i].InstallerImage = version, simtest.InstallerOf(simtest.Schematic, version)
		out[i].Config = declaredConfig(t, c.lab, out[i].ControlPlane, simtest.KubernetesVersion, out[i].InstallerImage, c.patches[c.index(out[i].Target.Name)])
	}
	return out
}

func (c *realCluster) index(name string) int {
	return slices.IndexFunc(c.nodes, func(n rollout.Node) bool { return n.Target.Name == name })
}

// configure starts a machine at address with the cluster's config for name (its hostname too),
// as its own config apply installs it; not yet one of c.nodes.
func (c *realCluster) configure(t *testing.T, name, address string, controlPlane bool, opts ...simnode.Option) (*simnode.Node, rollout.Node) {
	t.Helper()
	cfg := declaredConfig(t, c.lab, controlPlane, simtest.KubernetesVersion, simtest.Installer, hostnamePatch(name))
	n := c.lab.Configured(t, address, cfg, append([]simnode.Option{simnode.WithStaticPodLag(3 * time.Second), simnode.WithRebootTime(150 * time.Millisecond)}, opts...)...)
	return n, rollout.Node{Target: node.Target{Name: name, Address: n.Addr()}, ControlPlane: controlPlane,
		TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, Config: cfg}
}

// A control plane that answers leaves etcd itself after the gates and a snapshot; the member
// list is then the control planes declared, its Node is deleted, and the next Talos upgrade
// passes every etcd gate. From 4 to 3: Talos refuses to upgrade a control plane of a cluster of
// two members (internal/pkg/etcd/etcd.go ValidateForUpgrade).
func TestARemovedControlPlaneLeavesEtcdAndTheNextUpgradeRolls(t *testing.T) {
	c := newRealCluster(t, 45)
	c.lab.Trust.SetInstallers(simtest.Factory{Versions: []string{"v1.11.5", "v1.11.6"}})
	cp4, cp4Node := c.configure(t, "cp-4", "127.0.45.15", true)
	c.sim, c.nodes, c.patches = append(c.sim, cp4), append(c.nodes, cp4Node), append(c.patches, hostnamePatch("cp-4"))
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k, base := c.admin(t, ctx)
	if got := c.members(t, ctx, c.sim[0]); !slices.Equal(got, []string{"cp-1", "cp-2", "cp-3", "cp-4"}) {
		t.Fatalf("etcd members %v before the removal, want cp-1 to cp-4", got)
	}

	leaving := c.nodes[2]
	leaving.Leaving = true
	staying := []rollout.Node{c.nodes[0], c.nodes[1], c.nodes[4], c.nodes[3]}
	mark := len(c.lab.Trust.Timeline())
	var log logLines
	result, err := rollout.Run(ctx, append(slices.Clone(staying), leaving), c.options(t, log.add))
	if err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	if len(result.Changes) != 1 || !strings.HasPrefix(result.Changes[0], "cp-3: removed (health and etcd gates") || len(result.Snapshots) != 1 {
		t.Errorf("changes %q, snapshots %q", result.Changes, result.Snapshots)
	}
	if got := c.members(t, ctx, c.sim[0]); !slices.Equal(got, []string{"cp-1", "cp-2", "cp-4"}) {
		t.Errorf("etcd members %v, want cp-1, cp-2 and cp-4", got)
	}
	if _, err := k.Send(ctx, base, http.MethodGet, "/api/v1/nodes/cp-3", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Node cp-3 after the removal: %v, want not found", err)
	}
	c.awaitMaintenance(t, c.sim[2])
	got := c.kinds(mark, simnode.TimelineSnapshot, simnode.TimelineEtcdLeave, simnode.TimelineReset, simnode.TimelineWipe, simnode.TimelineApply, simnode.TimelineUpgrade)
	if want := []string{"cp-1:snapshot", "cp-3:etcd-leave", "cp-3:reset", "cp-3:wipe"}; !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}

	// The next Talos upgrade counts two members and rolls.
	mark = len(c.lab.Trust.Timeline())
	log = logLines{}
	result, err = rollout.Run(ctx, c.to(t, staying, "v1.11.6"), c.options(t, log.add))
	if err != nil {
		t.Fatalf("upgrade after the removal: %v\n%s", err, log.text())
	}
	if got := c.kinds(mark, simnode.TimelineUpgrade); !slices.Equal(got, []string{"cp-1:upgrade", "cp-2:upgrade", "cp-4:upgrade", "worker-1:upgrade"}) {
		t.Errorf("upgrades %v, want cp-1, cp-2, cp-4, worker-1", got)
	}
	for _, i := range []int{0, 1, 3, 4} {
		if v := c.sim[i].State().TalosVersion; v != "v1.11.6" {
			t.Errorf("%s runs %s", c.nodes[i].Target.Name, v)
		}
	}
}
