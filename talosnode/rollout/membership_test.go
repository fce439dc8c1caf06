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
		out[i].Config = declaredConfig(t, c.lab, out[i].ControlPlane, simtest.KubernetesVersion, out[i].InstallerImage, c.patches[c.at(out[i].Target.Name)])
	}
	return out
}

func (c *realCluster) at(name string) int {
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

// index is where the first timeline entry after mark of node name and kind is, -1 without one.
func (c *realCluster) index(mark int, name, kind string) int {
	for i, e := range c.lab.Trust.Timeline()[mark:] {
		if e.Event == kind && c.name(e.Node) == name {
			return mark + i
		}
	}
	return -1
}

// A control plane that stopped is declared again under its name at a new address, where its
// replacement was installed by its own config apply and joined etcd as a learner: the dead member
// is removed by id from a control plane that stays, the new one is awaited until etcd promoted it,
// and only then does anything else roll (cp-1's and worker-1's config changes, behind gates that
// count the new member).
func TestAStoppedControlPlaneReplacedAtANewAddressLeavesEtcdByIDAndItsSuccessorJoinsFirst(t *testing.T) {
	c := newRealCluster(t, 48)
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c.sim[2].Stop()
	old := c.nodes[2]
	mark := len(c.lab.Trust.Timeline())
	newCP3, declaredCP3 := c.configure(t, "cp-3", "127.0.48.15", true, simnode.WithEtcdPromoteTime(time.Second))
	if got := c.members(t, ctx, c.sim[0]); !slices.Equal(got, []string{"cp-1", "cp-2", "cp-3", "cp-3 (learner)"}) {
		t.Fatalf("etcd members %v once the new cp-3 is installed, want the stopped cp-3 and the new one a learner", got)
	}
	c.nodes[2] = declaredCP3
	c.sim[2] = newCP3
	sysctl := "machine:\n  sysctls:\n    vm.max_map_count: '262144'\n"
	declared := c.declare(t, sysctl, sysctl)
	declared[2].Config = declaredCP3.Config // cp-3 carries what its own apply installed
	declared[2].New = true
	old.Leaving, old.Replaced = true, true
	var log logLines
	opts := c.options(t, log.add)
	opts.HealthTimeout = 8 * time.Second // also how long the stopped cp-3 is given to answer
	result, err := rollout.Run(ctx, append(declared, old), opts)
	if err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	if got := c.members(t, ctx, c.sim[0]); !slices.Equal(got, []string{"cp-1", "cp-2", "cp-3"}) {
		t.Errorf("etcd members %v, want cp-1, cp-2 and the new cp-3", got)
	}
	oldIP := strings.Split(old.Target.Address, ":")[0]
	removed := -1
	for i, e := range c.lab.Trust.Timeline()[mark:] {
		if e.Event == simnode.TimelineEtcdMemberRemoved && e.Node == oldIP {
			removed = mark + i
		}
	}
	promoted := c.index(mark, "cp-3", simnode.TimelineEtcdLearnerPromoted)
	first := min(c.index(mark, "cp-1", simnode.TimelineApply), c.index(mark, "worker-1", simnode.TimelineApply))
	if removed < 0 || promoted < 0 || first < 0 || removed > first || promoted > first {
		t.Errorf("timeline indexes: old cp-3 removed %d, new cp-3 promoted %d, first other apply %d; want both before\n%v", removed, promoted, first, c.lab.Trust.Timeline()[mark:])
	}
	if !strings.Contains(strings.Join(result.Changes, "\n"), "cp-3: removed (replaced at another address: its etcd member removed by id") {
		t.Errorf("changes %q", result.Changes)
	}
	if !strings.Contains(log.text(), "WARNING") && !strings.Contains(log.text(), "does not answer") {
		t.Errorf("the log does not say the old cp-3 did not answer:\n%s", log.text())
	}

	// A rerun with the same declaration (the new cp-3 now recorded) changes nothing.
	declared[2].New = false
	mark = len(c.lab.Trust.Timeline())
	if result, err = rollout.Run(ctx, declared, c.options(t, nil)); err != nil || len(result.Changes) != 0 {
		t.Fatalf("rerun: %v, changes %q", err, result.Changes)
	}
	if got := c.kinds(mark, simnode.TimelineApply, simnode.TimelineReset, simnode.TimelineEtcdMemberRemoved, simnode.TimelineEtcdLeave); len(got) > 0 {
		t.Errorf("rerun touched %v", got)
	}
}

// A control plane added while its etcd member is a learner: the rollout waits until etcd has
// promoted it before it changes any other node, and then counts it in every etcd gate.
func TestANewControlPlaneIsAwaitedUntilEtcdPromotesItBeforeAnyOtherChange(t *testing.T) {
	c := newRealCluster(t, 49)
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	mark := len(c.lab.Trust.Timeline())
	cp4, declaredCP4 := c.configure(t, "cp-4", "127.0.49.15", true, simnode.WithEtcdPromoteTime(2*time.Second))
	if got := c.members(t, ctx, c.sim[0]); !slices.Contains(got, "cp-4 (learner)") {
		t.Fatalf("etcd members %v once cp-4 is installed, want cp-4 a learner", got)
	}
	c.sim, c.nodes, c.patches = append(c.sim, cp4), append(c.nodes, declaredCP4), append(c.patches, hostnamePatch("cp-4"))
	sysctl := "machine:\n  sysctls:\n    vm.max_map_count: '262144'\n"
	declared := c.declare(t, sysctl, sysctl)
	declared[4].Config, declared[4].New = declaredCP4.Config, true // what its own apply installed
	var log logLines
	if _, err := rollout.Run(ctx, declared, c.options(t, log.add)); err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	promoted := c.index(mark, "cp-4", simnode.TimelineEtcdLearnerPromoted)
	first := c.index(mark, "cp-1", simnode.TimelineApply)
	if promoted < 0 || first < 0 || promoted > first {
		t.Errorf("cp-4 promoted at %d, cp-1's apply at %d: want the promotion first\n%v", promoted, first, c.lab.Trust.Timeline()[mark:])
	}
	if got := c.members(t, ctx, c.sim[0]); !slices.Equal(got, []string{"cp-1", "cp-2", "cp-3", "cp-4"}) {
		t.Errorf("etcd members %v", got)
	}
	if !strings.Contains(log.text(), "cp-4 ("+cp4.Addr()+"): new control plane: a promoted etcd member") {
		t.Errorf("the log does not say cp-4 was awaited:\n%s", log.text())
	}
}

// While a control plane's removal is pending it is still a member the gate expects: an etcd
// member nobody declares stops the removal, and the gate says which members it expects.
func TestTheEtcdGateOfAPendingRemovalCountsTheLeavingMachineAsLeaving(t *testing.T) {
	c := newCluster(t, 22)
	c.lab.Configured(t, "127.0.17.227", declaredConfig(t, c.lab, true, "1.34.1", simtest.Installer, ""), simnode.WithRebootTime(150*time.Millisecond))
	leaving := c.nodes[2]
	leaving.Leaving = true
	declared := append(slices.Delete(slices.Clone(c.nodes), 2, 3), leaving)
	opts := c.options(t, 1)
	opts.HealthTimeout = 2 * time.Second
	_, err := rollout.Run(context.Background(), declared, opts)
	if err == nil || !strings.Contains(err.Error(), "4 etcd members listed, 3 expected (2 control planes declared and cp-3, still a member until it leaves)") {
		t.Fatalf("error %v, want the leaving control plane counted as leaving", err)
	}
	if got := c.events(0, simnode.TimelineEtcdLeave); len(got) > 0 {
		t.Errorf("left etcd: %v", got)
	}
}
