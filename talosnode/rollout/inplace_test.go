package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// realCluster is 3 control planes and a worker on 127.0.<subnet>.x with a real API server; Talos
// refreshes their static pods' status only every 3 s, longer than a node's turn here, as its
// 15 s are on real machines.
type realCluster struct {
	lab     *simtest.Cluster
	sim     []*simnode.Node
	nodes   []rollout.Node
	patches []string
}

func newRealCluster(t *testing.T, subnet int) *realCluster {
	t.Helper()
	l := simtest.New(t)
	l.RealControlPlane(t, -1)
	c := &realCluster{lab: l}
	for i, name := range []string{"cp-1", "cp-2", "cp-3", "worker-1"} {
		cp := i < 3
		hostname := "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: " + name + "\n"
		cfg := declaredConfig(t, l, cp, simtest.KubernetesVersion, simtest.Installer, hostname)
		n := l.Configured(t, fmt.Sprintf("127.0.%d.%d", subnet, 11+i), cfg, simnode.WithStaticPodLag(3*time.Second), simnode.WithRebootTime(150*time.Millisecond))
		c.sim = append(c.sim, n)
		c.patches = append(c.patches, hostname)
		c.nodes = append(c.nodes, rollout.Node{
			Target: node.Target{Name: name, Address: n.Addr()}, ControlPlane: cp,
			TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, Config: cfg,
		})
	}
	l.Bootstrap(t, c.sim[0])
	return c
}

// declare is every node's config with a patch added (control planes' or workers').
func (c *realCluster) declare(t *testing.T, controlPlanes, workers string) []rollout.Node {
	t.Helper()
	out := slices.Clone(c.nodes)
	for i := range out {
		patch := workers
		if out[i].ControlPlane {
			patch = controlPlanes
		}
		out[i].Config = addPatch(t, declaredConfig(t, c.lab, out[i].ControlPlane, simtest.KubernetesVersion, simtest.Installer, c.patches[i]), patch)
	}
	return out
}

func addPatch(t *testing.T, data []byte, patch string) []byte {
	t.Helper()
	p, err := configpatcher.LoadPatch([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithBytes(data), []configpatcher.Patch{p})
	if err != nil {
		t.Fatal(err)
	}
	data, err = out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (c *realCluster) options(t *testing.T, log func(string)) rollout.Options {
	return rollout.Options{
		Credentials: node.Credentials(c.lab.Credentials), ApplyMode: machine.ApplyConfigurationRequest_AUTO, MaxUnavailableWorkers: 1,
		HealthTimeout: 20 * time.Second, Snapshots: rollout.Snapshots{Dir: t.TempDir(), Prefix: "lab"}, Poll: 100 * time.Millisecond,
		Kubernetes: true, Log: log,
	}
}

// waitReady waits until the rollout's own pre-flight would pass: every control plane answering.
func (c *realCluster) waitKubernetes(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, n := range c.sim {
		for n.State().KubernetesNode == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no Node a minute after the bootstrap", n.Addr())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logLines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestInPlaceChangesAreAwaitedAndABadAPIServerFlagStopsAtTheFirstControlPlane(t *testing.T) {
	c := newRealCluster(t, 42)
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// A good API server change and a new kubelet on the worker: each lands before the next node.
	var log logLines
	good := c.declare(t, "cluster:\n  apiServer:\n    extraArgs:\n      audit-log-maxage: \"7\"\n",
		"machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n")
	if _, err := rollout.Run(ctx, good, c.options(t, log.add)); err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	address := func(name string) string {
		return c.nodes[slices.IndexFunc(c.nodes, func(n rollout.Node) bool { return n.Target.Name == name })].Target.Address
	}
	for _, name := range []string{"cp-1", "cp-2", "cp-3"} {
		if !strings.Contains(log.text(), name+" ("+address(name)+"): the change has landed") {
			t.Errorf("no wait for %s's change to land:\n%s", name, log.text())
		}
	}
	// A new kubelet image is a Kubernetes upgrade: its own step, awaited until the Node reports it.
	if !strings.Contains(log.text(), "worker-1 ("+address("worker-1")+"): kubelet 1.34.2 runs") {
		t.Errorf("no wait for worker-1's kubelet:\n%s", log.text())
	}
	if !strings.Contains(log.text(), "waiting for kube-apiserver to run the new config") {
		t.Errorf("the log does not say what it waits for:\n%s", log.text())
	}
	if got := c.sim[3].State().KubernetesNode; got == nil {
		t.Fatal("worker-1 has no Node")
	}

	// A flag the API server refuses: cp-1 is changed, its API server never turns Ready, and the
	// rollout stops there while MachineStatus still says ready (Talos has not looked yet).
	for _, n := range c.sim[:3] {
		if err := n.SetStaticPodFails(simnode.KubeAPIServer, true); err != nil {
			t.Fatal(err)
		}
	}
	applies := make([]int, 3)
	for i, n := range c.sim[:3] {
		applies[i] = n.State().Applies
	}
	bad := c.declare(t, "cluster:\n  apiServer:\n    extraArgs:\n      audit-log-maxage: \"7\"\n      no-such-flag: \"true\"\n",
		"machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n")
	opts := c.options(t, log.add)
	opts.HealthTimeout = 4 * time.Second
	_, err := rollout.Run(ctx, bad, opts)
	var rerr *rollout.Error
	if !errors.As(err, &rerr) || rerr.Node.Name != "cp-1" || rerr.Phase != rollout.InPlace {
		t.Fatalf("rollout error %v, want cp-1 in phase %q\n%s", err, rollout.InPlace, log.text())
	}
	if !strings.Contains(rerr.Seen, "kube-system/kube-apiserver-cp-1") || !strings.Contains(rerr.Seen, "not Ready") {
		t.Errorf("the error does not name the pod that is not Ready: %s", rerr.Seen)
	}
	if got := c.sim[0].State().Applies; got != applies[0]+1 {
		t.Errorf("cp-1 applies %d, want %d", got, applies[0]+1)
	}
	for i, n := range c.sim[1:3] {
		if got := n.State().Applies; got != applies[i+1] {
			t.Errorf("cp-%d was touched: applies %d, want %d", i+2, got, applies[i+1])
		}
	}
}
