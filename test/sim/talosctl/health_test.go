package talosctl

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

// TestHealth runs the real `talosctl health --server=false` (Talos' pkg/cluster/check
// DefaultClusterChecks, run by talosctl itself through one endpoint, which forwards to each node)
// against a simulated cluster of 3 control planes and 1 worker with the real etcd and
// kube-apiserver: it passes, and it fails naming the node and the check when a node is stopped
// or its etcd is failing. kube-proxy and CoreDNS come from Talos' bootstrap manifests, whose pods
// the simulator keeps as their controllers would (node/workloads.go), so their checks (Ready pods
// as many as the DaemonSet's desired and the Deployment's replicas) pass too. Nodes: 127.0.25.x.
func TestHealth(t *testing.T) {
	bin := toolbin.Binary(t, "TALOSCTL", "talosctl")
	cluster := simtest.NewCluster(t, "sim-health", "https://127.0.25.11:6443")
	cluster.RealControlPlane(t, -1)
	cps := []string{"127.0.25.11", "127.0.25.12", "127.0.25.13"}
	workers := []string{"127.0.25.21"}
	nodes := map[string]*node.Node{}
	var endpoint string
	for i, ip := range append(append([]string{}, cps...), workers...) {
		n := cluster.NodeOn(t, ip, toolbin.FreePort(t, ip), simtest.TalosVersion, simtest.Schematic)
		data := cluster.ControlPlane(t, simtest.KubernetesVersion, "", "")
		if i >= len(cps) {
			data = cluster.Worker(t, simtest.KubernetesVersion, "", "")
		}
		simtest.Apply(t, n, data)
		if i == 0 {
			endpoint = n.Addr()
			cluster.Bootstrap(t, n)
		}
		nodes[ip] = n
	}
	dir := t.TempDir()
	tc := cluster.Talosconfig
	tc.Contexts[tc.Context].Endpoints = []string{endpoint}
	if err := tc.Save(filepath.Join(dir, "talosconfig")); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, bin: bin, dir: dir, config: filepath.Join(dir, "talosconfig")}
	// health runs its checks in order, each polled until it passes or the wait timeout ends.
	health := func(wait string) (string, error) {
		_, stderr, err := c.run2(3*time.Minute, "--talosconfig", c.config, "-n", cps[0], "health", "--server=false",
			"--control-plane-nodes", strings.Join(cps, ","), "--worker-nodes", strings.Join(workers, ","), "--wait-timeout", wait)
		return stderr, err
	}
	// failsAt: health stopped at check, and its reports of it name the node (the last may be the
	// wait timeout ending a call).
	failsAt := func(t *testing.T, check, ip string) {
		t.Helper()
		stderr, err := health("15s")
		if err == nil {
			t.Fatalf("health passed; want it to fail at %q naming %s:\n%s", check, ip, stderr)
		}
		i := strings.Index(stderr, "waiting for "+check+": ")
		if i < 0 || strings.Contains(stderr, "waiting for "+check+": OK") {
			t.Fatalf("health did not fail at %q:\n%s", check, stderr)
		}
		if reports := stderr[i:]; !strings.Contains(reports, ip) {
			t.Fatalf("health failed at %q without naming %s:\n%s", check, ip, stderr)
		}
	}

	t.Run("passes", func(t *testing.T) {
		stderr, err := health("3m")
		if err != nil {
			t.Fatal(err)
		}
		for _, check := range []string{"etcd to be healthy", "apid to be ready", "kubelet to be healthy",
			"all k8s nodes to report", "all control plane static pods to be running",
			"all control plane components to be ready", "all k8s nodes to report ready", "all k8s nodes to report schedulable",
			"kube-proxy to report ready", "coredns to report ready"} {
			if !strings.Contains(stderr, "waiting for "+check+": OK") {
				t.Errorf("no OK for %q:\n%s", check, stderr)
			}
		}
	})

	t.Run("a stopped node", func(t *testing.T) {
		w := nodes[workers[0]]
		w.Stop()
		defer func() {
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
		}()
		failsAt(t, "apid to be ready", workers[0])
	})

	t.Run("a failing etcd", func(t *testing.T) {
		cp := nodes[cps[1]]
		cp.SetEtcdHealthy(false)
		defer cp.SetEtcdHealthy(true)
		failsAt(t, "etcd to be healthy", cps[1])
	})
}
