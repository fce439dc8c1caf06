package talosctl

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

// TestBootstrapRecoverFrom is Talos' disaster-recovery guide with the real talosctl against a
// control plane with the real etcd: `etcd snapshot`, then `reset --graceful=false --reboot
// --system-labels-to-wipe EPHEMERAL` (etcd waits for a bootstrap), then `bootstrap
// --recover-from`, which prints etcdutl's status of the file, uploads it (EtcdRecover) and
// bootstraps with recover_etcd; etcd answers again. A second run is refused: the data directory
// is no longer empty. Nodes: 127.0.25.3x.
func TestBootstrapRecoverFrom(t *testing.T) {
	bin := toolbin.Binary(t, "TALOSCTL", "talosctl")
	cluster := simtest.NewCluster(t, "sim-recover", "https://127.0.25.31:6443")
	cluster.RealControlPlane(t, -1)
	ip := "127.0.25.31"
	n := cluster.NodeOn(t, ip, toolbin.FreePort(t, ip), simtest.TalosVersion, simtest.Schematic)
	simtest.Apply(t, n, cluster.ControlPlane(t, simtest.KubernetesVersion, "", ""))
	cluster.Bootstrap(t, n)
	dir := t.TempDir()
	tc := cluster.Talosconfig
	tc.Contexts[tc.Context].Endpoints = []string{n.Addr()}
	if err := tc.Save(filepath.Join(dir, "talosconfig")); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, bin: bin, dir: dir, config: filepath.Join(dir, "talosconfig")}
	cp := simNode{n, ip}
	path := filepath.Join(dir, "db.snapshot")
	// The real etcd starts at once (no delay) but takes a moment to answer; until it runs the
	// simulator's own snapshot would come.
	fromRealEtcd := func(mark int) bool {
		tl := cluster.Trust.Timeline()[mark:]
		i := slices.IndexFunc(tl, func(e node.TimelineEntry) bool { return e.Event == node.TimelineSnapshot })
		return i >= 0 && strings.HasSuffix(tl[i].Detail, "from the real etcd")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mark := len(cluster.Trust.Timeline())
		out, err := c.on(cp, "etcd", "snapshot", path)
		if err == nil && strings.Contains(out, "snapshot info: hash ") && fromRealEtcd(mark) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot of the real etcd within a minute: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	mark := len(cluster.Trust.Timeline())
	if _, err := c.on(cp, "reset", "--graceful=false", "--reboot", "--wait=false", "--system-labels-to-wipe", "EPHEMERAL"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		back := slices.ContainsFunc(cluster.Trust.Timeline()[mark:], func(e node.TimelineEntry) bool { return e.Event == node.TimelineUp })
		if back {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the control plane is not back within 30s of its reset")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := c.on(cp, "etcd", "members"); err == nil {
		t.Fatalf("etcd members after the wipe answered:\n%s", out)
	}

	out, err := c.on(cp, "bootstrap", "--recover-from", path)
	if err != nil {
		t.Fatal(err)
	}
	status := regexp.MustCompile(`recovering from snapshot "` + regexp.QuoteMeta(path) + `": hash [0-9a-f]{8}, revision \d+, total keys \d+, total size \d+`)
	if !status.MatchString(out) {
		t.Fatalf("bootstrap --recover-from printed %q, want etcdutl's status of the file", out)
	}
	if out, err := c.on(cp, "etcd", "members"); err != nil || !strings.Contains(out, ip) {
		t.Fatalf("etcd members after the recovery: %v\n%s", err, out)
	}
	if _, err := c.on(cp, "bootstrap", "--recover-from", path); err == nil || !strings.Contains(err.Error(), "etcd data directory is not empty") {
		t.Fatalf("a second recovery: %v, want etcd data directory is not empty", err)
	}
}
