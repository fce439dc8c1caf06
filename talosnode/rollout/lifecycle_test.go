package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// clusterOn is newCluster with node i (cp-1..3, worker-1..3) running versions[i], each with its
// hostname as its Node name; with real, the lab runs a real etcd and kube-apiserver.
func clusterOn(t *testing.T, net int, versions []string, real bool) *cluster {
	t.Helper()
	l := simtest.New(t)
	if real {
		l.RealControlPlane(t, -1)
	}
	l.Trust.SetInstallers(simtest.Factory{Versions: []string{"v1.11.5", "v1.11.6", "v1.12.0", "v1.13.9", "v1.14.1"}})
	c := &cluster{lab: l}
	for i, version := range versions {
		cp := i < 3
		name := fmt.Sprintf("cp-%d", i+1)
		if !cp {
			name = fmt.Sprintf("worker-%d", i-2)
		}
		image := simtest.InstallerOf(simtest.Schematic, version)
		cfg := declaredConfig(t, l, cp, simtest.KubernetesVersion, image, hostnamePatch(name))
		n := l.Node(t, fmt.Sprintf("127.0.17.%d", net*10+i+1), version, simtest.Schematic, simnode.WithRebootTime(150*time.Millisecond))
		simtest.Apply(t, n, cfg)
		c.sim = append(c.sim, n)
		c.nodes = append(c.nodes, rollout.Node{
			Target: node.Target{Name: name, Address: n.Addr()}, ControlPlane: cp,
			TalosVersion: version, SchematicID: simtest.Schematic, InstallerImage: image, Config: cfg,
		})
	}
	l.Bootstrap(t, c.sim[0])
	return c
}

func hostnamePatch(name string) string {
	return "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: " + name + "\n"
}

// to is every node declared on release version (its installer in its config too).
func (c *cluster) to(t *testing.T, version string) []rollout.Node {
	t.Helper()
	out := make([]rollout.Node, len(c.nodes))
	for i, n := range c.nodes {
		n.TalosVersion, n.InstallerImage = version, simtest.InstallerOf(simtest.Schematic, version)
		n.Config = declaredConfig(t, c.lab, n.ControlPlane, simtest.KubernetesVersion, n.InstallerImage, hostnamePatch(n.Target.Name))
		out[i] = n
	}
	return out
}

// calls is, per node, the upgrade calls it received after mark: "lifecycle" for
// LifecycleService.Upgrade, "machine" for MachineService.Upgrade.
func (c *cluster) calls(mark int) map[string][]string {
	out := map[string][]string{}
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if e.Event != simnode.TimelineUpgrade {
			continue
		}
		call := "machine"
		if strings.HasSuffix(e.Detail, " lifecycle") {
			call = "lifecycle"
		}
		out[c.name(e.Node)] = append(out[c.name(e.Node)], call)
	}
	return out
}

func TestA113ClusterUpgradesThroughLifecycleServiceAndTheRolloutDrainsEachNodeBeforeItsReboot(t *testing.T) {
	c := clusterOn(t, 15, []string{"v1.13.9", "v1.13.9", "v1.13.9", "v1.13.9", "v1.13.9", "v1.13.9"}, true)
	deadline := time.Now().Add(time.Minute)
	for _, n := range c.sim {
		for n.State().KubernetesNode == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no Node a minute after the bootstrap", n.Addr())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var log logLines
	opts := c.options(t, 1)
	opts.Kubernetes, opts.Log, opts.HealthTimeout = true, log.add, 20*time.Second
	if _, err := rollout.Run(ctx, c.to(t, "v1.14.1"), opts); err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	calls := c.calls(0)
	for i, n := range c.nodes {
		if got := strings.Join(calls[n.Target.Name], ","); got != "lifecycle" {
			t.Errorf("%s: upgrade calls %q, want one LifecycleService.Upgrade", n.Target.Name, got)
		}
		if !strings.Contains(log.text(), n.Target.String()+": runs v1.13.9: upgrading through LifecycleService") {
			t.Errorf("%s: the log does not say which call it takes:\n%s", n.Target.Name, log.text())
		}
		s := c.sim[i].State()
		if s.TalosVersion != "v1.14.1" {
			t.Errorf("%s runs %s", n.Target.Name, s.TalosVersion)
		}
		// The rollout, not Talos, cordoned and drained the Node before it asked for the reboot.
		if len(s.KubeAtReboot) != 1 || !s.KubeAtReboot[0].Unschedulable || len(s.KubeAtReboot[0].Pods) != 0 || s.KubeAtReboot[0].Mode != "DEFAULT" {
			t.Errorf("%s at its reboots: %+v, want one DEFAULT reboot with its Node cordoned and no pods", n.Target.Name, s.KubeAtReboot)
		}
	}
	k, base := c.kubeAdmin(t, ctx)
	for _, n := range c.nodes {
		data, err := k.Send(ctx, base, http.MethodGet, "/api/v1/nodes/"+n.Target.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), `"unschedulable":true`) {
			t.Errorf("Node %s still cordoned after its upgrade", n.Target.Name)
		}
		if !strings.Contains(log.text(), n.Target.String()+": Node "+n.Target.Name+" uncordoned") {
			t.Errorf("no uncordon of %s in the log", n.Target.Name)
		}
	}
}

// kubeAdmin is the cluster's admin client (the Kubeconfig RPC's) and cp-1's API server.
func (c *cluster) kubeAdmin(t *testing.T, ctx context.Context) (*kube.Client, string) {
	t.Helper()
	tc, err := node.Dial(ctx, c.nodes[0].Target, node.Credentials(c.lab.Credentials))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close() //nolint:errcheck
	data, err := tc.Kubeconfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kube.New(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return k, "https://" + strings.Split(c.nodes[0].Target.Address, ":")[0] + ":6443"
}

func TestAMixedClusterUpgradesEachNodeThroughTheCallItsReleaseServes(t *testing.T) {
	versions := []string{"v1.12.0", "v1.13.9", "v1.12.0", "v1.13.9", "v1.12.0", "v1.13.9"}
	c := clusterOn(t, 16, versions, false)
	var log logLines
	opts := c.options(t, 1)
	opts.Log = log.add
	if _, err := rollout.Run(context.Background(), c.to(t, "v1.14.1"), opts); err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	calls := c.calls(0)
	for i, n := range c.nodes {
		want, says := "machine", "upgrading through MachineService.Upgrade"
		if versions[i] == "v1.13.9" {
			want, says = "lifecycle", "upgrading through LifecycleService"
		}
		if got := strings.Join(calls[n.Target.Name], ","); got != want {
			t.Errorf("%s on %s: upgrade calls %q, want %q", n.Target.Name, versions[i], got, want)
		}
		if !strings.Contains(log.text(), n.Target.String()+": runs "+versions[i]+": "+says) {
			t.Errorf("%s: the log does not say %q:\n%s", n.Target.Name, says, log.text())
		}
		if s := c.sim[i].State(); s.TalosVersion != "v1.14.1" {
			t.Errorf("%s runs %s", n.Target.Name, s.TalosVersion)
		}
	}
}

func TestARefusedInstallerOnTheLifecyclePathStopsTheRolloutBeforeAnyReboot(t *testing.T) {
	c := clusterOn(t, 17, []string{"v1.13.9", "v1.13.9", "v1.13.9", "v1.13.9", "v1.13.9", "v1.13.9"}, false)
	boots := make([]string, len(c.sim))
	for i, n := range c.sim {
		boots[i] = n.State().BootID
	}
	// Talos 1.11.5's installer refuses a host on 1.13.9 (too new to downgrade from), in its
	// pre-flight checks inside LifecycleService.Upgrade. Only the release moves: the config stays.
	declared := make([]rollout.Node, len(c.nodes))
	for i, n := range c.nodes {
		n.TalosVersion, n.InstallerImage = "v1.11.5", simtest.InstallerOf(simtest.Schematic, "v1.11.5")
		declared[i] = n
	}
	mark := len(c.lab.Trust.Timeline())
	_, err := rollout.Run(context.Background(), declared, c.options(t, 1))
	var rerr *rollout.Error
	if !errors.As(err, &rerr) || rerr.Node.Name != "cp-1" || rerr.Phase != rollout.UpgradeCall {
		t.Fatalf("error %v, want cp-1's %q", err, rollout.UpgradeCall)
	}
	for _, want := range []string{"pre-flight checks failed: host version 1.13.9 is too new to downgrade to Talos 1.11.5", "installer exit code 4 (environment error)", "nothing was installed", "upgrade --legacy --stage"} {
		if !strings.Contains(rerr.Seen, want) {
			t.Errorf("the error does not say %q: %s", want, rerr.Seen)
		}
	}
	if got := c.events(mark, simnode.TimelineDown); len(got) != 0 {
		t.Errorf("nodes went down after a refused install: %v", got)
	}
	for i, n := range c.sim {
		if s := n.State(); s.BootID != boots[i] || s.TalosVersion != "v1.13.9" {
			t.Errorf("%s: boot %s -> %s, runs %s", c.nodes[i].Target.Name, boots[i], s.BootID, s.TalosVersion)
		}
	}

	// An image that does not boot after a successful install: the post-check names the rollback,
	// not the unmount failure only MachineService.Upgrade's sequence can have.
	c.sim[0].SetBootFails(true)
	opts := c.options(t, 1)
	_, err = rollout.Run(context.Background(), c.to(t, "v1.14.1"), opts)
	if !errors.As(err, &rerr) || rerr.Node.Name != "cp-1" || rerr.Phase != rollout.PostCheck {
		t.Fatalf("error %v, want cp-1's %q", err, rollout.PostCheck)
	}
	for _, want := range []string{"the installer reported success", "rolled back", "dmesg", "rebootMode powercycle"} {
		if !strings.Contains(rerr.Seen, want) {
			t.Errorf("the error does not say %q: %s", want, rerr.Seen)
		}
	}
	if strings.Contains(rerr.Seen, "--stage") {
		t.Errorf("the error recommends --stage, which talosctl ignores without --legacy on 1.13+: %s", rerr.Seen)
	}
}
