package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/redact"
	"talos-cluster/talosnode/rollout"
)

// k8sFrom and k8sTo are one Kubernetes minor within Talos v1.11's range: the API server binary the
// simulator runs stays; the mirror pods and kubelets carry the versions.
const (
	k8sFrom = "1.33.5"
	k8sTo   = simtest.KubernetesVersion
)

// newK8sCluster is 3 control planes and 2 workers on 127.0.<subnet>.x with a real API server,
// running Kubernetes k8sFrom.
func newK8sCluster(t *testing.T, subnet int) *realCluster {
	t.Helper()
	l := simtest.New(t)
	l.RealControlPlane(t, -1)
	c := &realCluster{lab: l}
	for i, name := range []string{"cp-1", "cp-2", "cp-3", "worker-1", "worker-2"} {
		cp := i < 3
		hostname := "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: " + name + "\n"
		cfg := declaredConfig(t, l, cp, k8sFrom, simtest.Installer, hostname)
		n := l.Configured(t, fmt.Sprintf("127.0.%d.%d", subnet, 11+i), cfg, simnode.WithStaticPodLag(time.Second), simnode.WithRebootTime(150*time.Millisecond))
		c.sim = append(c.sim, n)
		c.patches = append(c.patches, hostname)
		c.nodes = append(c.nodes, rollout.Node{
			Target: node.Target{Name: name, Address: n.Addr()}, ControlPlane: cp,
			TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, Config: cfg,
		})
	}
	l.Bootstrap(t, c.sim[0])
	c.waitKubernetes(t)
	return c
}

// k8sTarget is every node declared at Kubernetes k8sTo.
func (c *realCluster) k8sTarget(t *testing.T) []rollout.Node {
	t.Helper()
	out := slices.Clone(c.nodes)
	for i := range out {
		out[i].Config = declaredConfig(t, c.lab, out[i].ControlPlane, k8sTo, simtest.Installer, c.patches[i])
	}
	return out
}

// k8sStep matches the log line of a component moved in place: node, component.
var k8sStep = regexp.MustCompile(`^(\S+) \(\S+\): (kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet) \S+ -> \S+: applied in place`)

// k8sSteps are the "<node> <component>" steps of the log, in order.
func k8sSteps(log *logLines) []string {
	log.mu.Lock()
	defer log.mu.Unlock()
	var out []string
	for _, l := range log.lines {
		if m := k8sStep.FindStringSubmatch(l); m != nil {
			out = append(out, m[1]+" "+m[2])
		}
	}
	return out
}

func TestAKubernetesMinorMovesComponentMajorAndNoKubeletPassesAnAPIServer(t *testing.T) {
	c := newK8sCluster(t, 32)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var log logLines
	target := c.k8sTarget(t)
	if _, err := rollout.Run(ctx, target, c.options(t, log.add)); err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}

	steps := k8sSteps(&log)
	rank := map[string]int{"kube-apiserver": 0, "kube-controller-manager": 1, "kube-scheduler": 2, "kube-proxy": 3, "kubelet": 4}
	want := []string{
		"cp-1 kube-apiserver", "cp-2 kube-apiserver", "cp-3 kube-apiserver",
		"cp-1 kube-controller-manager", "cp-2 kube-controller-manager", "cp-3 kube-controller-manager",
		"cp-1 kube-scheduler", "cp-2 kube-scheduler", "cp-3 kube-scheduler",
		"cp-1 kube-proxy", "cp-2 kube-proxy", "cp-3 kube-proxy",
		"cp-1 kubelet", "cp-2 kubelet", "cp-3 kubelet",
	}
	if len(steps) != len(want)+2 || !slices.Equal(steps[:len(want)], want) {
		t.Fatalf("steps:\n%s\nwant:\n%s\nthen both workers' kubelets\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"), log.text())
	}
	if w := slices.Sorted(slices.Values(steps[len(want):])); !slices.Equal(w, []string{"worker-1 kubelet", "worker-2 kubelet"}) {
		t.Errorf("worker steps %v", w)
	}
	// The skew invariant at every step: a kubelet moves only once every API server has.
	apiServers := 0
	for i, s := range steps {
		if i > 0 && rank[strings.Fields(s)[1]] < rank[strings.Fields(steps[i-1])[1]] {
			t.Errorf("step %d %q after %q", i, s, steps[i-1])
		}
		switch strings.Fields(s)[1] {
		case "kube-apiserver":
			apiServers++
		case "kubelet":
			if apiServers != 3 {
				t.Errorf("%s with %d of 3 API servers moved", s, apiServers)
			}
		}
	}
	for i, n := range c.sim {
		s := n.State()
		if !strings.Contains(s.Config, "kubelet:v"+k8sTo) || strings.Contains(s.Config, k8sFrom) {
			t.Errorf("%s does not run Kubernetes %s only", c.nodes[i].Target.Name, k8sTo)
		}
		live, err := node.Read(ctx, c.nodes[i].Target, node.Credentials(c.lab.Credentials))
		if err != nil {
			t.Fatal(err)
		}
		hash := mustHash(t, target[i].Config)
		if d, err := rollout.Compare(target[i], hash, live, c.options(t, nil).ApplyMode); err != nil || d.Config != nil || d.Image {
			t.Errorf("%s: not the declared config after the run: %+v %v", c.nodes[i].Target.Name, d, err)
		}
	}

	// A second run finds nothing to do.
	applies := make([]int, len(c.sim))
	for i, n := range c.sim {
		applies[i] = n.State().Applies
	}
	var again logLines
	if _, err := rollout.Run(ctx, target, c.options(t, again.add)); err != nil {
		t.Fatalf("second rollout: %v\n%s", err, again.text())
	}
	for i, n := range c.sim {
		if got := n.State().Applies; got != applies[i] {
			t.Errorf("%s applied again on the second run", c.nodes[i].Target.Name)
		}
	}
	if strings.Contains(again.text(), "kubernetes upgrade") {
		t.Errorf("the second run planned a Kubernetes upgrade:\n%s", again.text())
	}
}

func TestAnAPIServerThatNeverTurnsReadyStopsTheKubernetesUpgradeAndARerunResumes(t *testing.T) {
	c := newK8sCluster(t, 34)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := c.sim[1].SetStaticPodFails(simnode.KubeAPIServer, true); err != nil {
		t.Fatal(err)
	}
	var log logLines
	target := c.k8sTarget(t)
	opts := c.options(t, log.add)
	opts.HealthTimeout = 4 * time.Second
	_, err := rollout.Run(ctx, target, opts)
	var rerr *rollout.Error
	if !errors.As(err, &rerr) || rerr.Node.Name != "cp-2" || rerr.Phase != rollout.K8sAPIServer {
		t.Fatalf("rollout error %v, want cp-2 in phase %q\n%s", err, rollout.K8sAPIServer, log.text())
	}
	if !strings.Contains(rerr.Error(), "kube-apiserver "+k8sTo) || !strings.Contains(rerr.Seen, "kube-apiserver-cp-2") {
		t.Errorf("the error does not name the component and its pod: %v", rerr)
	}
	if got := k8sSteps(&log); !slices.Equal(got, []string{"cp-1 kube-apiserver", "cp-2 kube-apiserver"}) {
		t.Errorf("steps before the stop: %v", got)
	}
	for _, n := range c.sim[2:] {
		if strings.Contains(n.State().Config, "v"+k8sTo) {
			t.Errorf("%s was touched", n.Addr())
		}
	}

	if err := c.sim[1].SetStaticPodFails(simnode.KubeAPIServer, false); err != nil {
		t.Fatal(err)
	}
	cp1 := c.sim[0].State().Applies
	var rerun logLines
	if _, err := rollout.Run(ctx, target, c.options(t, rerun.add)); err != nil {
		t.Fatalf("rerun: %v\n%s", err, rerun.text())
	}
	steps := k8sSteps(&rerun)
	if len(steps) == 0 || slices.Contains(steps, "cp-1 kube-apiserver") || slices.Contains(steps, "cp-2 kube-apiserver") {
		t.Errorf("the rerun's steps %v: want it to resume after cp-2's kube-apiserver", steps)
	}
	// cp-1's kube-apiserver is not applied again: its applies are the four other components' and
	// the final pass's at most.
	if got := c.sim[0].State().Applies - cp1; got > 5 {
		t.Errorf("cp-1 applied %d times on the rerun", got)
	}
}

// mustHash is a declared config's canonical hash, as the rollout compares it.
func mustHash(t *testing.T, data []byte) string {
	t.Helper()
	d, err := redact.FromYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	return d.Hash
}
