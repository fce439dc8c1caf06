package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// newRealClusterOf is newRealCluster with configs of a contract on nodes running a release.
// Its nodes are 127.0.<subnet>.<first+i>.
func newRealClusterOf(t *testing.T, subnet, first int, contract *config.VersionContract, release string) *realCluster {
	t.Helper()
	l := simtest.NewClusterOf(t, "lab", simtest.LabEndpoint, contract)
	l.RealControlPlane(t, -1)
	c := &realCluster{lab: l}
	for i, name := range []string{"cp-1", "cp-2", "cp-3", "worker-1"} {
		cp := i < 3
		hostname := "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: " + name + "\n"
		cfg := declaredConfig(t, l, cp, simtest.KubernetesVersion, simtest.Installer, hostname)
		n := l.Node(t, fmt.Sprintf("127.0.%d.%d", subnet, first+i), release, simtest.Schematic, simnode.WithStaticPodLag(3*time.Second), simnode.WithRebootTime(150*time.Millisecond))
		simtest.Apply(t, n, cfg)
		c.sim = append(c.sim, n)
		c.patches = append(c.patches, hostname)
		c.nodes = append(c.nodes, rollout.Node{
			Target: node.Target{Name: name, Address: n.Addr()}, ControlPlane: cp,
			TalosVersion: release, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, Config: cfg,
		})
	}
	l.Bootstrap(t, c.sim[0])
	return c
}

// On a 1.14-contract cluster of Talos 1.14 nodes the API server's settings are a
// KubeAPIServerConfig document, and its static pod runs from final-kube-apiserver, whose version
// moves apart from kube-apiserver's (a new service-account issuer changes only the final one).
// The rollout reads the settings through the K8s* accessors and the version the pod carries from
// the resource the node renders it from, so it waits for the change and sees it land.
func TestA114ContractChangeIsAwaitedOnTalos114Nodes(t *testing.T) {
	c := newRealClusterOf(t, 44, 11, config.TalosVersion1_14, "v1.14.1")
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kubelet := "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: ghcr.io/siderolabs/kubelet:v1.34.2\n"
	issuer := "apiVersion: v1alpha1\nkind: KubeServiceAccountConfig\nissuer:\n  issuerURL: https://issuer.example.com\n"

	var log logLines
	if _, err := rollout.Run(ctx, c.declare(t, issuer, kubelet), c.options(t, log.add)); err != nil {
		t.Fatalf("rollout with a new service-account issuer: %v\n%s", err, log.text())
	}
	for i, n := range c.nodes {
		// The worker's only change is its kubelet image: the Kubernetes upgrade's kubelet step.
		landed := n.Target.String() + ": the change has landed"
		if !n.ControlPlane {
			landed = n.Target.String() + ": kubelet 1.34.2 runs"
		}
		if !strings.Contains(log.text(), landed) {
			t.Errorf("no wait for %s's change to land (node %d):\n%s", n.Target, i, log.text())
		}
	}

	log = logLines{}
	apiServer := issuer + "---\napiVersion: v1alpha1\nkind: KubeAPIServerConfig\nextraArgs:\n  audit-log-maxage: \"7\"\n"
	if _, err := rollout.Run(ctx, c.declare(t, apiServer, kubelet), c.options(t, log.add)); err != nil {
		t.Fatalf("rollout with an API server flag: %v\n%s", err, log.text())
	}
	if !strings.Contains(log.text(), "waiting for kube-apiserver to run the new config") {
		t.Errorf("the rollout did not see the KubeAPIServerConfig change:\n%s", log.text())
	}
}

// Talos 1.14 applies every change without a reboot and refuses the REBOOT mode (v1.14.1
// v1alpha1_server.go ApplyConfiguration). In `auto` the rollout reboots, drained, a node whose
// change reaches past what Talos 1.11 applied in place (machine.env here), and applies the rest
// in place; in `reboot` it applies NO_REBOOT, then drains and reboots every node itself.
func TestOn114NodesTheRolloutRebootsWhatTakesEffectOnlyAtBoot(t *testing.T) {
	c := newRealClusterOf(t, 44, 21, config.TalosVersion1_11, "v1.14.1")
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	boots := func() []string {
		var out []string
		for _, n := range c.sim {
			out = append(out, n.State().BootID)
		}
		return out
	}

	before := boots()
	var log logLines
	sysctl := "machine:\n  sysctls:\n    net.core.somaxconn: \"65535\"\n"
	env := "machine:\n  env:\n    HTTP_PROXY: http://proxy.invalid:3128\n"
	if _, err := rollout.Run(ctx, c.declare(t, sysctl, env), c.options(t, log.add)); err != nil {
		t.Fatalf("auto rollout: %v\n%s", err, log.text())
	}
	after := boots()
	for i := range 3 {
		if after[i] != before[i] {
			t.Errorf("%s rebooted for a sysctl", c.nodes[i].Target)
		}
	}
	worker := c.nodes[3].Target
	if after[3] == before[3] || !strings.Contains(c.sim[3].State().Config, "HTTP_PROXY") {
		t.Errorf("%s: not rebooted into its new machine.env (boot %s -> %s)", worker, before[3], after[3])
	}
	for _, want := range []string{worker.String() + ": the config change reboots the node: Node worker-1 cordoned", worker.String() + ": Talos applies it without a reboot and the change takes effect at a boot: rebooting"} {
		if !strings.Contains(log.text(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.text())
		}
	}
	if k := c.sim[3].State().KubernetesNode; k == nil {
		t.Error("worker-1 has no Node")
	}

	before = after
	log = logLines{}
	opts := c.options(t, log.add)
	opts.ApplyMode = machine.ApplyConfigurationRequest_REBOOT
	if _, err := rollout.Run(ctx, c.declare(t, "machine:\n  sysctls:\n    net.core.somaxconn: \"65536\"\n", env+"  sysctls:\n    net.core.somaxconn: \"65536\"\n"), opts); err != nil {
		t.Fatalf("reboot rollout: %v\n%s", err, log.text())
	}
	after = boots()
	for i, n := range c.sim {
		modes := n.State().ApplyModes
		if after[i] == before[i] || modes[len(modes)-1] != "NO_REBOOT" {
			t.Errorf("%s: boot %s -> %s, apply modes %v: want a reboot after a NO_REBOOT apply", c.nodes[i].Target, before[i], after[i], modes)
		}
	}
}
