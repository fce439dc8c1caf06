package rollout

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"talos-cluster/talosnode/node"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifySnapshotAcceptsADatabaseWithItsSha256AndRefusesAnythingElse(t *testing.T) {
	dir := t.TempDir()
	db := make([]byte, 4*512)
	for i := range db {
		db[i] = byte(i * 7)
	}
	sum := sha256.Sum256(db)
	good := filepath.Join(dir, "good.db")
	writeFile(t, good, append(append([]byte{}, db...), sum[:]...))
	if err := VerifySnapshot(good); err != nil {
		t.Fatalf("a database with its sha256: %v", err)
	}

	truncated := filepath.Join(dir, "truncated.db")
	writeFile(t, truncated, append(append([]byte{}, db[:1000]...), sum[:]...))
	if err := VerifySnapshot(truncated); err == nil || !strings.Contains(err.Error(), "512-byte pages") {
		t.Fatalf("a cut database: %v", err)
	}

	corrupt := append(append([]byte{}, db...), sum[:]...)
	corrupt[10] ^= 0xff
	bad := filepath.Join(dir, "corrupt.db")
	writeFile(t, bad, corrupt)
	if err := VerifySnapshot(bad); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("a changed byte: %v", err)
	}
}

func TestPruneKeepsTheNewestSnapshotsOfOneNodeOnly(t *testing.T) {
	dir := t.TempDir()
	s := Snapshots{Dir: dir, Prefix: "prod", Keep: 2}
	start := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	var names []string
	for i := range 4 {
		name := "prod-cp-1-" + start.Add(time.Duration(i)*time.Minute).Format(snapshotTime) + ".db"
		names = append(names, name)
		writeFile(t, filepath.Join(dir, name), []byte("x"))
	}
	// Another node whose name starts like this one's, and another stack: not this node's.
	other := []string{"prod-cp-1-b-" + start.Format(snapshotTime) + ".db", "dev-cp-1-" + start.Format(snapshotTime) + ".db"}
	for _, name := range other {
		writeFile(t, filepath.Join(dir, name), []byte("x"))
	}
	if err := s.prune("prod-cp-1-"); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		_, err := os.Stat(filepath.Join(dir, name))
		if kept := err == nil; kept != (i >= 2) {
			t.Errorf("%s kept=%t, want %t", name, kept, i >= 2)
		}
	}
	for _, name := range other {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s removed: %v", name, err)
		}
	}
}

func TestSplitOrdersControlPlanesThenWorkersAndLeavesNewNodesOut(t *testing.T) {
	nodes := []Node{
		{Target: target("w-1"), ControlPlane: false},
		{Target: target("cp-2"), ControlPlane: true},
		{Target: target("cp-new"), ControlPlane: true, New: true},
		{Target: target("cp-1"), ControlPlane: true},
		{Target: target("w-2")},
		{Target: target("w-new"), New: true},
	}
	cps, workers := Split(nodes)
	if got := names(cps); got != "cp-2,cp-1" {
		t.Errorf("control planes %s, want the stack's order cp-2,cp-1", got)
	}
	if got := names(workers); got != "w-1,w-2" {
		t.Errorf("workers %s, want w-1,w-2", got)
	}
}

func TestModesMapTheStackWordsAndRefuseOthers(t *testing.T) {
	for _, mode := range []string{"auto", "no_reboot", "reboot", "staged"} {
		if _, err := ApplyMode(mode); err != nil {
			t.Errorf("apply mode %s: %v", mode, err)
		}
	}
	if _, err := ApplyMode("try"); err == nil {
		t.Error("apply mode try accepted")
	}
	for _, mode := range []string{"default", "powercycle"} {
		if _, err := RebootMode(mode); err != nil {
			t.Errorf("reboot mode %s: %v", mode, err)
		}
	}
	if _, err := RebootMode("kexec"); err == nil {
		t.Error("reboot mode kexec accepted")
	}
}

func target(name string) node.Target { return node.Target{Name: name, Address: name} }

func names(nodes []Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Target.Name)
	}
	return strings.Join(out, ",")
}
