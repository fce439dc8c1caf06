package backup_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/backup"
	"talos-cluster/talosnode/rollout"
)

// lab is three bootstrapped control planes on 127.0.58.<net*10+i> and the input naming them.
func lab(t *testing.T, net int) (*simtest.Cluster, []*simnode.Node, backup.Input) {
	t.Helper()
	l := simtest.New(t)
	in := backup.Input{}
	enc := base64.StdEncoding.EncodeToString
	in.MachineSecrets.Certs.Os.Cert = enc(l.Bundle.Certs.OS.Crt)
	in.MachineSecrets.Certs.Os.Key = enc(l.Bundle.Certs.OS.Key)
	var nodes []*simnode.Node
	for i := range 3 {
		n := l.Configured(t, fmt.Sprintf("127.0.58.%d", net*10+i+1), l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""))
		nodes = append(nodes, n)
		in.ControlPlanes = append(in.ControlPlanes, backup.ControlPlane{Name: fmt.Sprintf("cp-%d", i+1), Address: n.Addr()})
	}
	l.Bootstrap(t, nodes[0])
	return l, nodes, in
}

// snapshotsBy are the timeline's snapshot entries: node address and detail.
func snapshotsBy(l *simtest.Cluster) [][2]string {
	var out [][2]string
	for _, e := range l.Trust.Timeline() {
		if e.Event == simnode.TimelineSnapshot {
			out = append(out, [2]string{e.Node, e.Detail})
		}
	}
	return out
}

func TestTakeUsesAnEtcdBackupCertificateAloneAndKeepsFivePerNode(t *testing.T) {
	l, nodes, in := lab(t, 1)
	dir := filepath.Join(t.TempDir(), "snapshots")
	opts := backup.Options{Snapshots: rollout.Snapshots{Dir: dir, Prefix: "lab"}}
	start := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	var paths []string
	for i := range 7 {
		r, err := backup.Take(context.Background(), in, opts, start.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if r.Node.Name != "cp-1" {
			t.Fatalf("snapshot from %s, want the first healthy control plane cp-1", r.Node)
		}
		if err := rollout.VerifySnapshot(r.Path); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 || info.Size() != r.Size {
			t.Errorf("%s: mode %v size %d, want 0600 and the size reported (%d)", r.Path, info.Mode().Perm(), info.Size(), r.Size)
		}
		if r.Revision < 2 {
			t.Errorf("revision %d, want the newest key's revision (the simulator writes revisions from 2)", r.Revision)
		}
		paths = append(paths, r.Path)
	}
	if want := "lab-cp-1-20261126T050000.000Z.db"; filepath.Base(paths[0]) != want {
		t.Errorf("file %s, want %s (the rollout's <prefix>-<node>-<time>.db)", filepath.Base(paths[0]), want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range entries {
		kept = append(kept, e.Name())
	}
	want := []string{}
	for _, p := range paths[2:] {
		want = append(want, filepath.Base(p))
	}
	if !slices.Equal(kept, want) {
		t.Errorf("kept %v, want the newest five %v", kept, want)
	}

	// The node saw a caller with os:etcd:backup and no other role, every time.
	snaps := snapshotsBy(l)
	if len(snaps) != 7 {
		t.Fatalf("the simulator recorded %d snapshots, want 7: %v", len(snaps), snaps)
	}
	for _, s := range snaps {
		if s[0] != strings.Split(nodes[0].Addr(), ":")[0] || !strings.HasSuffix(s[1], ", by os:etcd:backup") {
			t.Errorf("snapshot %v, want one from %s by os:etcd:backup alone", s, nodes[0].Addr())
		}
	}
}

func TestCredentialsAreAnHourOfEtcdBackupOnly(t *testing.T) {
	l := simtest.New(t)
	var s backup.MachineSecrets
	s.Certs.Os.Cert = base64.StdEncoding.EncodeToString(l.Bundle.Certs.OS.Crt)
	s.Certs.Os.Key = base64.StdEncoding.EncodeToString(l.Bundle.Certs.OS.Key)
	creds, err := backup.Credentials(s)
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(creds.ClientCertificate)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(der)
	if block == nil {
		t.Fatal("the client certificate is not PEM")
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(crt.Subject.Organization, []string{"os:etcd:backup"}) {
		t.Errorf("roles (O=) %v, want os:etcd:backup alone", crt.Subject.Organization)
	}
	if life := crt.NotAfter.Sub(time.Now()); life > 61*time.Minute || life < 59*time.Minute {
		t.Errorf("valid for %s more, want an hour", life)
	}

	if _, err := backup.Credentials(backup.MachineSecrets{}); err == nil || !strings.Contains(err.Error(), "machineSecrets.certs.os") {
		t.Errorf("no CA: %v, want an error naming machineSecrets.certs.os", err)
	}
}

func TestTakeFallsOverToTheNextControlPlaneAndNamesEachWhenNoneAnswers(t *testing.T) {
	l, nodes, in := lab(t, 2)
	dir := t.TempDir()
	opts := backup.Options{Snapshots: rollout.Snapshots{Dir: dir, Prefix: "lab"}, StatusTimeout: 5 * time.Second}
	nodes[0].Stop()
	r, err := backup.Take(context.Background(), in, opts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.Node.Name != "cp-2" {
		t.Fatalf("snapshot from %s, want cp-2 (cp-1 is down)", r.Node)
	}
	if snaps := snapshotsBy(l); len(snaps) != 1 || snaps[0][0] != strings.Split(nodes[1].Addr(), ":")[0] {
		t.Errorf("snapshots %v, want one, from cp-2", snaps)
	}

	// cp-2's member unhealthy too: cp-3 is left without quorum, so without a leader.
	nodes[1].SetEtcdHealthy(false)
	_, err = backup.Take(context.Background(), in, opts, time.Now())
	if err == nil {
		t.Fatal("a snapshot with no control plane answering")
	}
	for _, want := range []string{"no control plane gave a snapshot", "cp-1 (" + nodes[0].Addr() + ")", "cp-2 (" + nodes[1].Addr() + "): etcd status: expected a healthy member", "cp-3 (" + nodes[2].Addr() + "): etcd status: expected a healthy member, seen errors: etcdserver: no leader"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
