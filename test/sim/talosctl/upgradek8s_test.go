package talosctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

// TestUpgradeK8s runs the real `talosctl upgrade-k8s` (Talos v1.14.1 pkg/cluster/kubernetes
// Upgrade, with go-kubernetes' path and removed-item checks) against 3 control planes and a
// worker running Talos v1.14.1 with the real etcd and kube-apiserver: a patch upgrade (1.36.1 ->
// 1.36.3), a minor one refused for a removed feature gate in a control plane's extraArgs, then
// the minor upgrade (-> 1.37.0). Each run is read back from the simulator's timeline: every image
// pre-pulled first, then every kube-apiserver, every kube-controller-manager, every
// kube-scheduler, then every kubelet on the new version, and no kubelet ever newer than an API
// server. The API server binary stays what setup built; only the mirror pods and kubelets carry
// the versions. Nodes: 127.0.27.x.
func TestUpgradeK8s(t *testing.T) {
	bin := toolbin.Binary(t, "TALOSCTL", "talosctl")
	const talosVersion, from = "v1.14.1", "1.36.1"
	cluster := simtest.NewCluster(t, "sim-upgrade-k8s", "https://127.0.27.11:6443")
	cluster.RealControlPlane(t, -1)
	cps := []string{"127.0.27.11", "127.0.27.12", "127.0.27.13"}
	workers := []string{"127.0.27.21"}
	all := append(slices.Clone(cps), workers...)
	nodes := map[string]*node.Node{}
	var endpoint string
	for i, ip := range all {
		n := cluster.NodeOn(t, ip, toolbin.FreePort(t, ip), talosVersion, simtest.Schematic)
		data := cluster.ControlPlane(t, from, "", "")
		if i >= len(cps) {
			data = cluster.Worker(t, from, "", "")
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
	// upgrade-k8s finds the nodes and the version it upgrades from in the API server: wait until
	// every Node is Ready and every static pod mirrored (Talos' own health checks).
	if _, stderr, err := c.run2(3*time.Minute, "--talosconfig", c.config, "-n", cps[0], "health", "--server=false",
		"--control-plane-nodes", strings.Join(cps, ","), "--worker-nodes", strings.Join(workers, ","), "--wait-timeout", "2m"); err != nil {
		t.Fatalf("cluster not healthy: %v\n%s", err, stderr)
	}

	upgrade := func(to string) (string, error) {
		stdout, stderr, err := c.run2(5*time.Minute, "--talosconfig", c.config, "-n", cps[0], "upgrade-k8s", "--to", to,
			"--with-docs=false", "--with-examples=false")
		return stdout + stderr, err
	}
	// run upgrades and checks the timeline entries it produced against upgrade-k8s' order.
	run := func(t *testing.T, to string) {
		t.Helper()
		mark := len(cluster.Trust.Timeline())
		out, err := upgrade(to)
		// Its last step syncs the bootstrap manifests the control plane renders (manifests.go).
		if err != nil || !strings.Contains(out, "updating manifests") {
			t.Fatalf("upgrade-k8s --to %s: %v\n%s", to, err, out)
		}
		if problems := checkUpgrade(cluster.Trust.Timeline(), mark, cps, all, from, to); len(problems) > 0 {
			t.Fatalf("upgrade-k8s --to %s:\n%s\ntalosctl said:\n%s", to, strings.Join(problems, "\n"), out)
		}
	}

	t.Run("patch", func(t *testing.T) { run(t, "1.36.3") })

	t.Run("a removed feature gate is refused", func(t *testing.T) {
		gated := nodes[cps[1]]
		set := func(patch string) {
			t.Helper()
			if err := gated.Set(t.Context(), node.Change{ConfigPatch: patch}); err != nil {
				t.Fatal(err)
			}
		}
		set("cluster:\n  apiServer:\n    extraArgs:\n      feature-gates: AnyVolumeDataSource=true\n")
		defer set("cluster:\n  apiServer:\n    extraArgs:\n      $patch: delete\n")
		mark := len(cluster.Trust.Timeline())
		out, err := upgrade("1.37.0")
		if err == nil {
			t.Fatalf("upgrade-k8s passed with a removed feature gate:\n%s", out)
		}
		if !strings.Contains(out, "AnyVolumeDataSource") || !strings.Contains(out, cps[1]) {
			t.Fatalf("refusal does not name the gate and the node: %v\n%s", err, out)
		}
		for _, e := range cluster.Trust.Timeline()[mark:] {
			if e.Event == node.TimelineImagePull || e.Event == node.TimelineComponent {
				t.Fatalf("the refused upgrade did something: %+v", e)
			}
		}
	})

	t.Run("minor", func(t *testing.T) { run(t, "1.37.0") })

	// The worker's kubelet runs 1.37.1 but never turns Ready: upgrade-k8s waits for it (the
	// Service never healthy) and never reports it updated. Last: the cluster stays so.
	t.Run("a kubelet that never turns ready", func(t *testing.T) {
		w := workers[0]
		nodes[w].SetKubeletNeverReady(true)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cmd := exec.CommandContext(ctx, c.bin, "--talosconfig", c.config, "-n", cps[0], "upgrade-k8s", "--to", "1.37.1",
			"--with-docs=false", "--with-examples=false")
		cmd.Dir, cmd.Env = c.dir, append(os.Environ(), "HOME="+c.dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		started := func() bool {
			for _, e := range cluster.Trust.Timeline() {
				if e.Event == node.TimelineComponent && e.Node == w && e.Component == "kubelet" && e.Version == "1.37.1" {
					return true
				}
			}
			return false
		}
		deadline := time.Now().Add(4 * time.Minute)
		for !started() {
			select {
			case err := <-done:
				t.Fatalf("upgrade-k8s ended (%v) before the worker's kubelet restarted:\n%s", err, out.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("the worker's kubelet never restarted on 1.37.1:\n%s", out.String())
			}
		}
		// It still waits a while later (the Service never turns healthy); then it is stopped.
		select {
		case err := <-done:
			t.Fatalf("upgrade-k8s ended (%v) with a kubelet that is not ready:\n%s", err, out.String())
		case <-time.After(3 * time.Second):
		}
		cancel()
		<-done
		if text := out.String(); !strings.Contains(text, `"`+w+`": waiting for kubelet restart`) || strings.Contains(text, `< "`+w+`": successfully updated`) {
			t.Fatalf("upgrade-k8s did not wait for the worker's kubelet:\n%s", text)
		}
	})
}

// checkUpgrade reads the timeline from mark on (one upgrade-k8s run to version to) and returns
// what breaks upgrade-k8s' order (v1.14.1 talos_managed.go Upgrade: prePullImages, then
// upgradeStaticPod per component over every control plane, then upgradeKubelet over every node),
// and the version-skew invariant over the whole timeline: no kubelet newer than an API server.
func checkUpgrade(timeline []node.TimelineEntry, mark int, cps, all []string, from, to string) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	pulls := map[string][]string{}
	firstChange := -1
	// The order of the phases: the index of the component entries of each, per node.
	phases := []string{node.KubeAPIServer, node.KubeControllerManager, node.KubeScheduler, "kubelet"}
	at := map[string]map[string]int{}
	for i, e := range timeline[mark:] {
		switch e.Event {
		case node.TimelineImagePull:
			pulls[e.Node] = append(pulls[e.Node], e.Detail)
			if firstChange >= 0 {
				bad("%s pulled %s after the first component changed", e.Node, e.Detail)
			}
		case node.TimelineComponent:
			if e.Version != to {
				bad("%s: %s started %s, not %s", e.Node, e.Component, e.Version, to)
				continue
			}
			if firstChange < 0 {
				firstChange = i
			}
			if at[e.Component] == nil {
				at[e.Component] = map[string]int{}
			}
			at[e.Component][e.Node] = i
		}
	}
	for _, ip := range all {
		want := []string{"ghcr.io/siderolabs/kubelet:v" + to}
		if slices.Contains(cps, ip) {
			want = append(want, "registry.k8s.io/kube-apiserver:v"+to, "registry.k8s.io/kube-controller-manager:v"+to, "registry.k8s.io/kube-scheduler:v"+to)
		}
		for _, image := range want {
			if !slices.Contains(pulls[ip], image) {
				bad("%s never pre-pulled %s (pulled %v)", ip, image, pulls[ip])
			}
		}
	}
	for p, component := range phases {
		nodes := cps
		if component == "kubelet" {
			nodes = all
		}
		for _, ip := range nodes {
			i, ok := at[component][ip]
			if !ok {
				bad("%s never started %s %s", ip, component, to)
				continue
			}
			// Every entry of the earlier phases comes before this one.
			for _, earlier := range phases[:p] {
				for other, j := range at[earlier] {
					if j > i {
						bad("%s's %s (%d) started before %s's %s (%d)", ip, component, i, other, earlier, j)
					}
				}
			}
		}
	}
	// Skew: at each kubelet start, every API server runs at least the kubelet's version.
	// A first start is not an entry: every component starts on the configs' version.
	var initial version
	if _, err := fmt.Sscanf(from, "%d.%d.%d", &initial[0], &initial[1], &initial[2]); err != nil {
		bad("version %q: %v", from, err)
	}
	running := map[string]map[string]version{}
	for _, component := range phases {
		running[component] = map[string]version{}
		for _, ip := range all {
			if component == "kubelet" || slices.Contains(cps, ip) {
				running[component][ip] = initial
			}
		}
	}
	for _, e := range timeline {
		if e.Event != node.TimelineComponent {
			continue
		}
		var v version
		if _, err := fmt.Sscanf(e.Version, "%d.%d.%d", &v[0], &v[1], &v[2]); err != nil {
			bad("component entry %+v: %v", e, err)
			continue
		}
		running[e.Component][e.Node] = v
		if e.Component != "kubelet" {
			continue
		}
		for ip, api := range running[node.KubeAPIServer] {
			if slices.Compare(v[:], api[:]) > 0 {
				bad("skew: %s's kubelet %s is newer than %s's kube-apiserver %s", e.Node, v, ip, api)
			}
		}
	}
	// Every node ends on the new version.
	for component, byNode := range running {
		for ip, v := range byNode {
			if v.String() != to {
				bad("%s runs %s %s at the end", ip, component, v)
			}
		}
	}
	return problems
}

// version is a Kubernetes release, major, minor, patch.
type version [3]int

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }
