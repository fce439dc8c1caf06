package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
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

// cluster is 3 control planes and 3 workers of one lab, bootstrapped, on 127.0.17.<net*10+i>.
type cluster struct {
	lab   *simtest.Cluster
	sim   []*simnode.Node
	nodes []rollout.Node
}

func newCluster(t *testing.T, net int, opts ...simnode.Option) *cluster {
	t.Helper()
	l := simtest.New(t)
	l.Trust.SetInstallers(simtest.Factory{Versions: []string{"v1.11.5", "v1.11.6", "v1.12.0", "v1.13.9", "v1.14.1"}})
	c := &cluster{lab: l}
	for i := range 6 {
		cp := i < 3
		name := fmt.Sprintf("cp-%d", i+1)
		if !cp {
			name = fmt.Sprintf("worker-%d", i-2)
		}
		address := fmt.Sprintf("127.0.17.%d", net*10+i+1)
		cfg := declaredConfig(t, l, cp, "1.34.1", simtest.Installer, "")
		n := l.Configured(t, address, cfg, append([]simnode.Option{simnode.WithRebootTime(150 * time.Millisecond)}, opts...)...)
		c.sim = append(c.sim, n)
		c.nodes = append(c.nodes, rollout.Node{
			Target:       node.Target{Name: name, Address: n.Addr()},
			ControlPlane: cp,
			TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer,
			Config: cfg,
		})
	}
	l.Bootstrap(t, c.sim[0])
	return c
}

func declaredConfig(t *testing.T, l *simtest.Cluster, controlPlane bool, kubernetes, image, patch string) []byte {
	t.Helper()
	if controlPlane {
		return l.ControlPlane(t, kubernetes, image, patch)
	}
	return l.Worker(t, kubernetes, image, patch)
}

// target moves every node to another release (and with it, the install image in its config).
func (c *cluster) target(t *testing.T, version string) []rollout.Node {
	t.Helper()
	return c.targetWith(t, version, "1.34.1", "")
}

// targetWith is target with a Kubernetes version and a config patch.
func (c *cluster) targetWith(t *testing.T, version, kubernetes, patch string) []rollout.Node {
	t.Helper()
	out := slices.Clone(c.nodes)
	image := simtest.InstallerOf(simtest.Schematic, version)
	for i := range out {
		out[i].TalosVersion, out[i].InstallerImage = version, image
		out[i].Config = declaredConfig(t, c.lab, out[i].ControlPlane, kubernetes, image, patch)
	}
	return out
}

// perNode is, over the timeline after mark, each node's events of the given kinds in order.
func (c *cluster) perNode(mark int, kinds ...string) map[string][]string {
	out := map[string][]string{}
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if slices.Contains(kinds, e.Event) {
			name := c.name(e.Node)
			out[name] = append(out[name], e.Event)
		}
	}
	return out
}

func (c *cluster) options(t *testing.T, workers int) rollout.Options {
	return rollout.Options{
		Credentials:           node.Credentials(c.lab.Credentials),
		ApplyMode:             machine.ApplyConfigurationRequest_AUTO,
		MaxUnavailableWorkers: workers,
		HealthTimeout:         5 * time.Second,
		Snapshots:             rollout.Snapshots{Dir: t.TempDir(), Prefix: "lab"},
		Poll:                  50 * time.Millisecond,
	}
}

func (c *cluster) name(address string) string {
	for _, n := range c.nodes {
		if n.Target.Address == address || strings.HasPrefix(n.Target.Address, address+":") {
			return n.Target.Name
		}
	}
	return address
}

// events are the names of the nodes with a timeline entry of the kind, after mark entries.
func (c *cluster) events(mark int, kind string) []string {
	var out []string
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if e.Event == kind {
			out = append(out, c.name(e.Node))
		}
	}
	return out
}

// downAtOnce is, over the timeline after mark, the most nodes down at once among those `among`
// accepts, and whether a control plane was ever down together with another node.
func (c *cluster) downAtOnce(mark int, among func(string) bool) (most int, cpShared bool) {
	down := map[string]bool{}
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		name := c.name(e.Node)
		switch e.Event {
		case simnode.TimelineDown:
			down[name] = true
		case simnode.TimelineUp:
			delete(down, name)
		default:
			continue
		}
		count, cps := 0, 0
		for n := range down {
			if among(n) {
				count++
			}
			if strings.HasPrefix(n, "cp-") {
				cps++
			}
		}
		most = max(most, count)
		if cps > 0 && len(down) > 1 {
			cpShared = true
		}
	}
	return most, cpShared
}

func isWorker(name string) bool { return strings.HasPrefix(name, "worker-") }

func TestRunUpgradesControlPlanesInOrderAloneThenWorkersInBatches(t *testing.T) {
	c := newCluster(t, 1)
	opts := c.options(t, 2)
	result, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), opts)
	if err != nil {
		t.Fatal(err)
	}
	upgrades := c.events(0, simnode.TimelineUpgrade)
	if got := strings.Join(upgrades[:3], ","); got != "cp-1,cp-2,cp-3" {
		t.Errorf("control planes upgraded in order %s, want cp-1,cp-2,cp-3 first; all: %v", got, upgrades)
	}
	if len(upgrades) != 6 {
		t.Errorf("upgrades %v, want every node once", upgrades)
	}
	// Talos 1.11 has no LifecycleService: each node takes MachineService.Upgrade, as talosctl does.
	for name, calls := range c.calls(0) {
		if got := strings.Join(calls, ","); got != "machine" {
			t.Errorf("%s: upgrade calls %q, want one MachineService.Upgrade", name, got)
		}
	}
	most, shared := c.downAtOnce(0, isWorker)
	if most != 2 || shared {
		t.Errorf("workers down at once at most %d (want 2); a control plane down with another node: %t", most, shared)
	}
	for _, n := range c.sim {
		if s := n.State(); s.TalosVersion != "v1.11.6" {
			t.Errorf("%s runs %s", s.Address, s.TalosVersion)
		}
	}
	if len(result.Snapshots) != 3 {
		t.Fatalf("snapshots %v, want one per control plane", result.Snapshots)
	}
	for i, path := range result.Snapshots {
		if !strings.Contains(path, fmt.Sprintf("lab-cp-%d-", i+1)) {
			t.Errorf("snapshot %d is %s", i, path)
		}
		if err := rollout.VerifySnapshot(path); err != nil {
			t.Error(err)
		}
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", path, info.Mode(), err)
		}
	}
	snaps := c.events(0, simnode.TimelineSnapshot)
	if strings.Join(snaps, ",") != "cp-1,cp-2,cp-3" {
		t.Errorf("snapshots served by %v", snaps)
	}

	// Done: a second run touches nothing.
	mark := len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.lab.Trust.Timeline()[mark:]; len(got) != 0 {
		t.Errorf("a converged cluster changed: %v", got)
	}
}

func TestAnImageThatDoesNotBootStopsTheRolloutAndARerunResumes(t *testing.T) {
	c := newCluster(t, 2)
	c.sim[1].SetBootFails(true)
	opts := c.options(t, 1)
	_, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), opts)
	var rerr *rollout.Error
	if !errors.As(err, &rerr) || rerr.Node.Name != "cp-2" || rerr.Phase != rollout.PostCheck || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("error %v, want cp-2's post-check naming the rollback", err)
	}
	if got := c.events(0, simnode.TimelineUpgrade); strings.Join(got, ",") != "cp-1,cp-2" {
		t.Errorf("upgrades %v, want cp-1,cp-2 and nothing after the failure", got)
	}

	c.sim[1].SetBootFails(false)
	mark := len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.events(mark, simnode.TimelineUpgrade); strings.Join(got, ",") != "cp-2,cp-3,worker-1,worker-2,worker-3" {
		t.Errorf("rerun upgraded %v, want everything but cp-1", got)
	}
}

func TestAnUnhealthyEtcdMemberStopsTheRolloutBeforeAnyChange(t *testing.T) {
	c := newCluster(t, 3)
	c.sim[2].SetEtcdHealthy(false)
	opts := c.options(t, 1)
	opts.HealthTimeout = 4 * time.Second
	_, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), opts)
	var rerr *rollout.Error
	if !errors.As(err, &rerr) || rerr.Node.Name != "cp-1" || rerr.Phase != rollout.PreCheck || !strings.Contains(rerr.Seen, "cp-3") {
		t.Fatalf("error %v, want cp-1's pre-check naming cp-3", err)
	}
	for _, kind := range []string{simnode.TimelineUpgrade, simnode.TimelineApply, simnode.TimelineSnapshot, simnode.TimelineDown} {
		if got := c.events(0, kind); len(got) > 0 {
			t.Errorf("%s on %v before etcd was healthy", kind, got)
		}
	}
}

func TestConfigChangesRollInOrderAndRebootOnlyWhenTalosMust(t *testing.T) {
	c := newCluster(t, 4)
	opts := c.options(t, 1)
	withPatch := func(patch string) []rollout.Node {
		out := slices.Clone(c.nodes)
		for i := range out {
			out[i].Config = declaredConfig(t, c.lab, out[i].ControlPlane, "1.34.1", simtest.Installer, patch)
		}
		return out
	}
	// A sysctl applies in place.
	if _, err := rollout.Run(context.Background(), withPatch("machine:\n  sysctls:\n    vm.max_map_count: '262144'\n"), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.events(0, simnode.TimelineApply); strings.Join(got, ",") != "cp-1,cp-2,cp-3,worker-1,worker-2,worker-3" {
		t.Errorf("applies %v, want the stack's order", got)
	}
	if got := c.events(0, simnode.TimelineDown); len(got) > 0 {
		t.Errorf("in-place change rebooted %v", got)
	}
	// machine.env needs a reboot: one node at a time.
	mark := len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), withPatch("machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n"), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.events(mark, simnode.TimelineDown); strings.Join(got, ",") != "cp-1,cp-2,cp-3,worker-1,worker-2,worker-3" {
		t.Errorf("reboots %v, want every node in order", got)
	}
	if most, shared := c.downAtOnce(mark, func(string) bool { return true }); most != 1 || shared {
		t.Errorf("%d nodes down at once", most)
	}
}

func TestNewNodesAreLeftToTheirInstall(t *testing.T) {
	c := newCluster(t, 5)
	fresh := c.lab.Node(t, "127.0.17.57", simtest.TalosVersion, simtest.Schematic)
	target := append(c.target(t, "v1.11.6"), rollout.Node{
		Target: node.Target{Name: "worker-4", Address: fresh.Addr()}, TalosVersion: "v1.11.6", SchematicID: simtest.Schematic,
		InstallerImage: simtest.InstallerOf(simtest.Schematic, "v1.11.6"), Config: declaredConfig(t, c.lab, false, "1.34.1", simtest.Installer, ""), New: true,
	})
	if _, err := rollout.Run(context.Background(), target, c.options(t, 3)); err != nil {
		t.Fatal(err)
	}
	if s := fresh.State(); s.Configured || s.TalosVersion != simtest.TalosVersion {
		t.Errorf("the new node was touched: configured %t, runs %s", s.Configured, s.TalosVersion)
	}
}

func TestAnEtcdMemberTheStackNoLongerDeclaresStopsTheRollout(t *testing.T) {
	c := newCluster(t, 6)
	target := slices.Delete(c.target(t, "v1.11.6"), 2, 3)
	opts := c.options(t, 1)
	opts.HealthTimeout = 4 * time.Second
	_, err := rollout.Run(context.Background(), target, opts)
	if err == nil || !strings.Contains(err.Error(), "3 etcd members listed, 2 control planes declared") {
		t.Fatalf("error %v, want the member count named", err)
	}
	if got := c.events(0, simnode.TimelineUpgrade); len(got) > 0 {
		t.Errorf("upgraded %v", got)
	}
}

// withPatch is every node's declaration with a patch on its config.
func (c *cluster) withPatch(t *testing.T, patch string) []rollout.Node {
	t.Helper()
	out := slices.Clone(c.nodes)
	for i := range out {
		out[i].Config = declaredConfig(t, c.lab, out[i].ControlPlane, "1.34.1", simtest.Installer, patch)
	}
	return out
}

func TestAStagedRolloutStagesOnceAndARerunChangesNothing(t *testing.T) {
	c := newCluster(t, 8)
	opts := c.options(t, 2)
	opts.ApplyMode = machine.ApplyConfigurationRequest_STAGED
	// machine.env takes a reboot to apply: staged, it waits for one.
	target := c.withPatch(t, "machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n")
	result, err := rollout.Run(context.Background(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.events(0, simnode.TimelineApply); len(got) != 6 {
		t.Errorf("applies %v, want one per node", got)
	}
	if got := c.events(0, simnode.TimelineDown); len(got) > 0 {
		t.Errorf("a staged rollout rebooted %v", got)
	}
	if len(result.Snapshots) != 3 || len(result.Changes) != 6 {
		t.Errorf("snapshots %v, changes %v; want 3 and 6", result.Snapshots, result.Changes)
	}
	for _, line := range result.Changes {
		if !strings.Contains(line, "config staged, active after the next reboot") {
			t.Errorf("change %q does not say the config waits for a reboot", line)
		}
	}
	for _, n := range c.sim {
		if s := n.State(); !s.Staged || strings.Contains(s.Config, "HTTPS_PROXY") {
			t.Errorf("%s: staged %t, active config has the change %t", s.Address, s.Staged, strings.Contains(s.Config, "HTTPS_PROXY"))
		}
	}

	// The nodes carry the staged config (MachineConfig persistent): nothing to apply, no snapshot.
	mark := len(c.lab.Trust.Timeline())
	result, err = rollout.Run(context.Background(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.lab.Trust.Timeline()[mark:]; len(got) != 0 {
		t.Errorf("a rerun of a staged rollout changed: %v", got)
	}
	if len(result.Snapshots) != 0 || len(result.Changes) != 0 {
		t.Errorf("rerun: snapshots %v, changes %v; want none", result.Snapshots, result.Changes)
	}

	// After a reboot the staged config is the active one: still nothing to do.
	cl, err := node.Dial(context.Background(), c.nodes[3].Target, node.Credentials(c.lab.Credentials))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() //nolint:errcheck
	before := c.sim[3].State().BootID
	if _, err := cl.RebootWithResponse(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s := c.sim[3].State(); s.BootID == before || s.Stage != "running"; s = c.sim[3].State() {
		if time.Now().After(deadline) {
			t.Fatalf("worker-1 did not reboot: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := c.sim[3].State(); s.Staged || !strings.Contains(s.Config, "HTTPS_PROXY") {
		t.Fatalf("after the reboot: staged %t, active config has the change %t", s.Staged, strings.Contains(s.Config, "HTTPS_PROXY"))
	}
	mark = len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), target, opts); err != nil {
		t.Fatal(err)
	}
	if got := c.lab.Trust.Timeline()[mark:]; len(got) != 0 {
		t.Errorf("a rerun after the reboot changed: %v", got)
	}
}

func TestAConfigStagedByHandIsReplacedOutsideStagedMode(t *testing.T) {
	c := newCluster(t, 9)
	opts := c.options(t, 1)
	// Someone staged a config on worker-1: it would replace the declared one at the next reboot.
	cl, err := node.Dial(context.Background(), c.nodes[3].Target, node.Credentials(c.lab.Credentials))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() //nolint:errcheck
	byHand := declaredConfig(t, c.lab, false, "1.34.1", simtest.Installer, "machine:\n  env:\n    BY_HAND: \"1\"\n")
	if _, err := cl.ApplyConfiguration(context.Background(), &machine.ApplyConfigurationRequest{Data: byHand, Mode: machine.ApplyConfigurationRequest_STAGED}); err != nil {
		t.Fatal(err)
	}
	mark := len(c.lab.Trust.Timeline())
	result, err := rollout.Run(context.Background(), c.nodes, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.events(mark, simnode.TimelineApply); strings.Join(got, ",") != "worker-1" {
		t.Errorf("applies %v, want worker-1's declared config again", got)
	}
	if got := c.events(mark, simnode.TimelineDown); len(got) > 0 {
		t.Errorf("rebooted %v: the active config was the declared one", got)
	}
	if len(result.Snapshots) != 0 || strings.Join(result.Changes, ";") != "worker-1: config" {
		t.Errorf("snapshots %v, changes %v", result.Snapshots, result.Changes)
	}
	if s := c.sim[3].State(); s.Staged {
		t.Error("the config staged by hand still waits for the next boot")
	}
}

func TestATalosAndKubernetesMinorBumpUpgradesFirstThenMovesKubernetesThenAppliesTheConfig(t *testing.T) {
	c := newCluster(t, 7)
	// Talos 1.11 does not support Kubernetes 1.35: every node moves to 1.12 keeping its config,
	// then Kubernetes moves component by component (each an apply: a control plane's three static
	// pods, kube-proxy and kubelet, a worker's kubelet), then the rest of the config.
	target := c.targetWith(t, "v1.12.0", "1.35.0", "")
	if _, err := rollout.Run(context.Background(), target, c.options(t, 1)); err != nil {
		t.Fatal(err)
	}
	for i, n := range c.sim {
		s := n.State()
		if s.TalosVersion != "v1.12.0" || !strings.Contains(s.Config, "kubelet:v1.35.0") {
			t.Errorf("%s runs %s; config has kubelet 1.35: %t", c.nodes[i].Target.Name, s.TalosVersion, strings.Contains(s.Config, "kubelet:v1.35.0"))
		}
	}
	for name, events := range c.perNode(0, simnode.TimelineUpgrade, simnode.TimelineApply, simnode.TimelineDown) {
		want := "upgrade,down,apply,apply,apply,apply,apply,apply"
		if isWorker(name) {
			want = "upgrade,down,apply,apply"
		}
		if got := strings.Join(events, ","); got != want {
			t.Errorf("%s: %s, want %s (one reboot, Kubernetes and the config after the upgrade)", name, got, want)
		}
	}
}

func TestARebootClassConfigChangeWithAnUpgradeRebootsEachNodeOnce(t *testing.T) {
	c := newCluster(t, 8)
	// machine.env needs a reboot; the running release accepts the config: it is staged, and the
	// upgrade's reboot makes it active.
	target := c.targetWith(t, "v1.11.6", "1.34.1", "machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n")
	if _, err := rollout.Run(context.Background(), target, c.options(t, 1)); err != nil {
		t.Fatal(err)
	}
	for name, events := range c.perNode(0, simnode.TimelineUpgrade, simnode.TimelineApply, simnode.TimelineDown) {
		if got := strings.Join(events, ","); got != "apply,upgrade,down" {
			t.Errorf("%s: %s, want apply,upgrade,down (the config staged, one reboot)", name, got)
		}
	}
	for i, n := range c.sim {
		if s := n.State(); s.TalosVersion != "v1.11.6" || !strings.Contains(s.Config, "HTTPS_PROXY") || s.Staged {
			t.Errorf("%s runs %s; config active %t, staged %t", c.nodes[i].Target.Name, s.TalosVersion, strings.Contains(s.Config, "HTTPS_PROXY"), s.Staged)
		}
	}
}

func TestPreflightRefusesAKubernetesVersionNoOrderOfChangesReaches(t *testing.T) {
	l := simtest.New(t)
	oldConfig := l.ControlPlane(t, "1.29.0", simtest.Installer, "")
	n := l.Configured(t, "127.0.17.250", oldConfig)
	declare := func(version, kubernetes string) []rollout.Node {
		image := simtest.InstallerOf(simtest.Schematic, version)
		return []rollout.Node{{Target: node.Target{Name: "cp-1", Address: n.Addr()}, ControlPlane: true, TalosVersion: version, SchematicID: simtest.Schematic,
			InstallerImage: image, Config: l.ControlPlane(t, kubernetes, image, "")}}
	}
	for _, tc := range []struct {
		version, kubernetes string
		want                []string
		path                []string
	}{
		// Same release: the running one must take the config.
		{"v1.11.5", "1.35.0", []string{"cp-1 runs Talos v1.11.5, which refuses the declared config", "Kubernetes 1.35.0; Talos v1.11.5 supports 1.29.0 to 1.34.99"}, nil},
		// 1.11 refuses 1.35 and 1.12 refuses the 1.29 the node runs: no order works.
		{"v1.12.0", "1.35.0", []string{"cp-1 runs Talos v1.11.5", "Talos v1.12.0 refuses the config the node carries now", "supports 1.30.0 to 1.35.99", "two updates"}, nil},
		// Staged on 1.11, or applied after the upgrade: both fine (1.30, the one minor after
		// the 1.29 the node runs, as Kubernetes moves one minor at a time).
		{"v1.12.0", "1.30.0", nil, nil},
		{"v1.11.5", "1.30.0", nil, nil},
		// A skipped minor is refused as talosctl upgrade-k8s refuses it (k8spath.go).
		{"v1.11.5", "1.31.0", []string{"talos-cluster:kubernetesVersion: 1.31.0 skips 1.30 (the cluster runs 1.29.0); Kubernetes moves one minor at a time: declare a 1.30 release first"}, nil},
		// A minor below the running one: refused whatever the config; a patch below is a rollback.
		{"v1.10.7", "1.33.0", []string{"cp-1 runs Talos v1.11.5 and the stack declares v1.10.7, an older minor", "etcd"}, nil},
		{"v1.11.4", "1.30.0", nil, nil},
		// Talos 1.14 installs only over 1.12.0 or later (machinery compatibility/talos114): the
		// refusal says why and which minors lead there; with a 1.13 release on the way, it goes.
		{"v1.14.1", "1.34.1", []string{"cp-1 runs Talos v1.11.5, and Talos v1.14.1 cannot be installed over v1.11.5 (host version 1.11.5 is too old to upgrade to Talos 1.14.1)",
			"talos-cluster:upgrade.path (for example a release of each of: 1.13)"}, nil},
		// A step the one before cannot reach is named as well.
		{"v1.14.1", "1.34.1", []string{"Talos v1.14.1 cannot be installed over v1.11.6"}, []string{"v1.11.6"}},
		// On the way the node runs the config it carries, Kubernetes 1.29, which 1.13 (and 1.12) refuse.
		{"v1.14.1", "1.34.1", []string{"cp-1 runs the config it carries on each release of its way (v1.13.9) until the declared config is applied, and Talos v1.13.9 refuses it",
			"supports 1.31.0 to 1.36.99"}, []string{"v1.13.9"}},
		{"v1.14.1", "1.34.1", []string{"(v1.12.0) until the declared config is applied, and Talos v1.12.0 refuses it"}, []string{"v1.12.0", "v1.13.9"}},
	} {
		opts := rollout.Options{Credentials: node.Credentials(l.Credentials), UpgradePath: tc.path}
		err := rollout.Preflight(context.Background(), declare(tc.version, tc.kubernetes), opts)
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("Talos %s, Kubernetes %s: %v", tc.version, tc.kubernetes, err)
			}
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Talos %s, Kubernetes %s: error %v, want it to say %q", tc.version, tc.kubernetes, err, w)
			}
		}
	}
	if s := n.State(); s.Applies != 1 {
		t.Errorf("pre-flight changed the node: %d applies", s.Applies)
	}
}

func TestAnUpgradePathTakesTheWholeClusterThroughEachReleaseInTurn(t *testing.T) {
	c := newCluster(t, 14)
	opts := c.options(t, 2)
	if err := rollout.Preflight(context.Background(), c.target(t, "v1.14.1"), opts); err == nil || !strings.Contains(err.Error(), "too old") {
		t.Fatalf("pre-flight without a path: %v; want v1.11.5 -> v1.14.1 refused", err)
	}
	opts.UpgradePath = []string{"v1.13.9"}
	if err := rollout.Preflight(context.Background(), c.target(t, "v1.14.1"), opts); err != nil {
		t.Fatal(err)
	}
	result, err := rollout.Run(context.Background(), c.target(t, "v1.14.1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range c.sim {
		if s := n.State(); s.TalosVersion != "v1.14.1" {
			t.Errorf("%s runs %s", c.nodes[i].Target.Name, s.TalosVersion)
		}
	}
	// Every node reached 1.13.9 before any node was asked for 1.14.1; control planes first, in order.
	var order []string
	for _, e := range c.lab.Trust.Timeline() {
		if e.Event == simnode.TimelineUpgrade {
			image := strings.Fields(e.Detail)[0]
			order = append(order, c.name(e.Node)+"@"+image[strings.LastIndex(image, ":")+1:])
		}
	}
	got := strings.Join(order, " ")
	if len(order) != 12 || !strings.HasPrefix(got, "cp-1@v1.13.9 cp-2@v1.13.9 cp-3@v1.13.9 ") ||
		strings.Index(got, "@v1.14.1") < strings.LastIndex(got, "@v1.13.9") || !strings.Contains(got, "cp-1@v1.14.1 cp-2@v1.14.1 cp-3@v1.14.1") {
		t.Errorf("upgrade calls %s; want the six nodes to v1.13.9 (control planes first, in order), then the six to v1.14.1", got)
	}
	if len(result.Snapshots) != 6 {
		t.Errorf("snapshots %v: want one per control plane per release", result.Snapshots)
	}
	// A rerun finds nothing to do.
	mark := len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), c.target(t, "v1.14.1"), opts); err != nil {
		t.Fatal(err)
	}
	if calls := c.events(mark, simnode.TimelineUpgrade); len(calls) != 0 {
		t.Errorf("rerun upgraded %v", calls)
	}
}

func TestANewControlPlaneWithOtherChangesConvergesOnARerunAfterAFailure(t *testing.T) {
	c := newCluster(t, 9)
	// cp-4's own config apply (a dependency of the rollout) installed it: it joined etcd.
	cp4 := c.lab.Configured(t, "127.0.17.97", declaredConfig(t, c.lab, true, "1.34.1", simtest.Installer, ""), simnode.WithRebootTime(150*time.Millisecond))
	target := slices.Clone(c.nodes)
	target = slices.Insert(target, 3, rollout.Node{Target: node.Target{Name: "cp-4", Address: cp4.Addr()}, ControlPlane: true,
		TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, Config: []byte(cp4.State().Config), New: true})
	sysctl := "machine:\n  sysctls:\n    vm.max_map_count: '262144'\n"
	target[0].Config = declaredConfig(t, c.lab, true, "1.34.1", simtest.Installer, sysctl)  // cp-1
	target[4].Config = declaredConfig(t, c.lab, false, "1.34.1", simtest.Installer, sysctl) // worker-1

	// A failure first (cp-2's etcd member is down): the recorded state keeps cp-4 new.
	c.sim[1].SetEtcdHealthy(false)
	opts := c.options(t, 1)
	opts.HealthTimeout = 2 * time.Second
	if _, err := rollout.Run(context.Background(), target, opts); err == nil || !strings.Contains(err.Error(), "cp-2") {
		t.Fatalf("error %v, want cp-2's etcd member named", err)
	}
	c.sim[1].SetEtcdHealthy(true)
	if _, err := rollout.Run(context.Background(), target, c.options(t, 1)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.sim[0].State().Config, "max_map_count") || !strings.Contains(c.sim[3].State().Config, "max_map_count") {
		t.Error("cp-1 or worker-1 did not get its config")
	}
	// Done: a further run with cp-4 still new changes nothing.
	mark := len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), target, c.options(t, 1)); err != nil {
		t.Fatal(err)
	}
	if got := c.lab.Trust.Timeline()[mark:]; len(got) != 0 {
		t.Errorf("a converged cluster changed: %v", got)
	}
}

func TestMaxUnavailableWorkersCountsPerPoolAndNeverTakesAWholePoolDown(t *testing.T) {
	c := newCluster(t, 10)
	storage := "machine:\n  nodeLabels:\n    node.kubernetes.io/pool: storage\n"
	target := c.target(t, "v1.11.6")
	for i := 3; i < 5; i++ { // worker-1 and worker-2
		target[i].Config = declaredConfig(t, c.lab, false, "1.34.1", target[i].InstallerImage, storage)
	}
	if _, err := rollout.Run(context.Background(), target, c.options(t, 2)); err != nil {
		t.Fatal(err)
	}
	inStorage := func(name string) bool { return name == "worker-1" || name == "worker-2" }
	if most, _ := c.downAtOnce(0, inStorage); most != 1 {
		t.Errorf("storage workers down at once: %d, want 1 (the pool keeps one up)", most)
	}
	if got := c.events(0, simnode.TimelineUpgrade); len(got) != 6 {
		t.Errorf("upgrades %v, want every node", got)
	}
}

func TestAnAbortedUpgradeIsReportedAsAbortedWithTheRemedies(t *testing.T) {
	c := newCluster(t, 11)
	c.sim[3].SetUpgradeAborts(true) // worker-1
	_, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), c.options(t, 1))
	var rerr *rollout.Error
	if !errors.As(err, &rerr) || rerr.Node.Name != "worker-1" || rerr.Phase != rollout.PostCheck {
		t.Fatalf("error %v, want worker-1's post-check", err)
	}
	for _, want := range []string{"Talos aborted the upgrade", "upgrade --stage", "rebootMode powercycle", "dmesg"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
	if s := c.sim[3].State(); s.TalosVersion != simtest.TalosVersion {
		t.Errorf("worker-1 runs %s after an aborted upgrade", s.TalosVersion)
	}
}

// TestAControlPlaneRebootsOnlyOnceItNoLongerLeadsEtcd: before a control plane reboots (an upgrade,
// a config change Talos applies with a reboot), the etcd leader hands its leadership to another
// member: over a whole rollout of 3 control planes no leader goes down while leader.
func TestAControlPlaneRebootsOnlyOnceItNoLongerLeadsEtcd(t *testing.T) {
	c := newCluster(t, 12)
	opts := c.options(t, 3)
	lost := func(mark int) []string {
		var out []string
		for _, e := range c.lab.Trust.Timeline()[mark:] {
			if e.Event == simnode.TimelineEtcdLeaderLost {
				out = append(out, c.name(e.Node)+" ("+e.Detail+")")
			}
		}
		return out
	}
	start := len(c.lab.Trust.Timeline())
	// A config change that needs a reboot, in reboot mode.
	target := slices.Clone(c.nodes)
	for i := range target {
		target[i].Config = declaredConfig(t, c.lab, target[i].ControlPlane, "1.34.1", simtest.Installer, "machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n")
	}
	opts.ApplyMode = machine.ApplyConfigurationRequest_REBOOT
	if _, err := rollout.Run(context.Background(), target, opts); err != nil {
		t.Fatal(err)
	}
	if got := c.events(start, simnode.TimelineDown); len(got) != 6 {
		t.Fatalf("reboots %v, want every node once", got)
	}
	if got := lost(start); len(got) > 0 {
		t.Errorf("config reboots took the etcd leader down: %v", got)
	}
	// An upgrade.
	mark := len(c.lab.Trust.Timeline())
	opts.ApplyMode = machine.ApplyConfigurationRequest_AUTO
	if _, err := rollout.Run(context.Background(), c.target(t, "v1.11.6"), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.events(mark, simnode.TimelineUpgrade); len(got) != 6 {
		t.Fatalf("upgrades %v, want every node once", got)
	}
	if got := lost(mark); len(got) > 0 {
		t.Errorf("upgrades took the etcd leader down: %v", got)
	}
	if got := c.events(start, simnode.TimelineEtcdLeader); len(got) < 2 {
		t.Errorf("leadership handed over %v; want at least once per run", got)
	}
}

// TestAfterEveryRebootTheRolloutWaitsForEtcdBeforeItsNextCall: a control plane is running and
// ready a moment before its etcd member has rejoined. After every reboot the rollout waits for
// every member before it calls the node again (here: the config applied after the upgrade) and
// before the next node's turn (its snapshot, its calls).
func TestAfterEveryRebootTheRolloutWaitsForEtcdBeforeItsNextCall(t *testing.T) {
	c := newCluster(t, 13, simnode.WithEtcdJoinTime(600*time.Millisecond))
	check := func(mark int, what string) {
		t.Helper()
		rejoining := map[string]bool{}
		for _, e := range c.lab.Trust.Timeline()[mark:] {
			name := c.name(e.Node)
			switch e.Event {
			case simnode.TimelineUp:
				if !isWorker(name) {
					rejoining[name] = true
				}
			case simnode.TimelineEtcdJoined:
				delete(rejoining, name)
			case simnode.TimelineUpgrade, simnode.TimelineApply, simnode.TimelineSnapshot:
				if len(rejoining) > 0 {
					t.Errorf("%s: %s on %s while the etcd member of %v had not rejoined since its boot", what, e.Event, name, slices.Sorted(maps.Keys(rejoining)))
				}
			}
		}
	}
	// Talos 1.11 does not support Kubernetes 1.35: each node upgrades and reboots, then Kubernetes
	// moves component by component (five applies on a control plane), then the config.
	mark := len(c.lab.Trust.Timeline())
	if _, err := rollout.Run(context.Background(), c.targetWith(t, "v1.12.0", "1.35.0", ""), c.options(t, 1)); err != nil {
		t.Fatal(err)
	}
	for name, events := range c.perNode(mark, simnode.TimelineUpgrade, simnode.TimelineApply, simnode.TimelineEtcdJoined) {
		// (The members' rejoin after the lab's installs may come first.)
		if want := "upgrade,etcd-joined,apply,apply,apply,apply,apply,apply"; !isWorker(name) && strings.TrimPrefix(strings.Join(events, ","), "etcd-joined,") != want {
			t.Errorf("%s: %s, want %s", name, strings.Join(events, ","), want)
		}
	}
	check(mark, "upgrade then config")
	// A config change Talos applies with a reboot: the next node waits for this one's member.
	mark = len(c.lab.Trust.Timeline())
	opts := c.options(t, 1)
	opts.ApplyMode = machine.ApplyConfigurationRequest_REBOOT
	if _, err := rollout.Run(context.Background(), c.targetWith(t, "v1.12.0", "1.35.0", "machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n"), opts); err != nil {
		t.Fatal(err)
	}
	if got := c.events(mark, simnode.TimelineEtcdJoined); strings.Join(got, ",") != "cp-1,cp-2,cp-3" {
		t.Errorf("members rejoined after the config reboots: %v", got)
	}
	check(mark, "reboot-class config")
}

// A removed worker that does not answer: without Kubernetes nothing can be done to it but say so;
// the rollout names it, records the removal and touches no other node.
func TestARemovedWorkerThatDoesNotAnswerIsReportedAndNothingElseIsTouched(t *testing.T) {
	c := newCluster(t, 21)
	c.sim[5].Stop()
	mark := len(c.lab.Trust.Timeline())
	leaving := c.nodes[5]
	leaving.Leaving = true
	var log logLines
	opts := c.options(t, 1)
	opts.Log = log.add
	result, err := rollout.Run(context.Background(), append(slices.Clone(c.nodes[:5]), leaving), opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := "WARNING: worker-3 (" + leaving.Target.Address + "): does not answer: its reset is skipped"; !strings.Contains(log.text(), want) {
		t.Errorf("log:\n%s\nwant %q", log.text(), want)
	}
	if len(result.Changes) != 1 || !strings.HasPrefix(result.Changes[0], "worker-3: removed (reset skipped, its Node left alone (kubernetesChecks off))") {
		t.Errorf("changes %q", result.Changes)
	}
	if got := c.perNode(mark, simnode.TimelineApply, simnode.TimelineUpgrade, simnode.TimelineDown); len(got) > 0 {
		t.Errorf("touched %v", got)
	}
}
