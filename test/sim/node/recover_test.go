package node

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdService is the etcd service's state and message on n.
func etcdService(t *testing.T, s sim, n *Node) (string, string) {
	t.Helper()
	resp, err := s.client(t, n).ServiceList(ctx(t, n))
	if err != nil {
		t.Fatalf("services of %s: %v", n.address, err)
	}
	for _, sv := range resp.GetMessages()[0].GetServices() {
		if sv.GetId() == "etcd" {
			return sv.GetState(), sv.GetHealth().GetLastMessage()
		}
	}
	t.Fatalf("no etcd service on %s", n.address)
	return "", ""
}

func upload(t *testing.T, s sim, n *Node, data []byte) error {
	t.Helper()
	_, err := s.client(t, n).EtcdRecover(ctx(t, n), bytes.NewReader(data))
	return err
}

func recoverEtcd(t *testing.T, s sim, n *Node, skipHash bool) error {
	t.Helper()
	return s.client(t, n).Bootstrap(ctx(t, n), &machine.BootstrapRequest{RecoverEtcd: true, RecoverSkipHashCheck: skipHash})
}

// wipeEtcd resets each control plane as Talos' disaster-recovery guide says (not graceful, a
// reboot, EPHEMERAL wiped) and waits until they are all back.
func wipeEtcd(t *testing.T, s sim, cps ...*Node) {
	t.Helper()
	for _, n := range cps {
		if _, err := s.client(t, n).MachineClient.Reset(ctx(t, n), &machine.ResetRequest{
			Reboot: true, SystemPartitionsToWipe: []*machine.ResetPartitionSpec{{Label: "EPHEMERAL", Wipe: true}},
		}); err != nil {
			t.Fatalf("reset %s: %v", n.address, err)
		}
	}
	for _, n := range cps {
		eventually(t, n.address.String()+" is back after its reset", func() bool {
			st := n.State()
			return st.Up && st.Stage == "running" && slices.Contains(kinds(s, n.address.String()), TimelineWipe+" EPHEMERAL")
		})
	}
}

// TestRecoveryFromASnapshotAfterEveryControlPlaneLostItsEtcd: Talos v1.11.5's disaster recovery.
// EtcdRecover takes an upload on any control plane and only there; Bootstrap{recover_etcd} is
// AlreadyExists while etcd has data. Once every control plane's EPHEMERAL is wiped the cluster's
// etcd is gone and each waits for a bootstrap; a recovery without an upload, or from a snapshot
// whose sha256 trailer does not match, fails the etcd service's pre-state (the latter leaving
// files, so the machine is AlreadyExists until wiped again); a good one restores a single member
// and the other control planes join it.
func TestRecoveryFromASnapshotAfterEveryControlPlaneLostItsEtcd(t *testing.T) {
	s := newSim(t, 22, 3, 1)
	cp1, cp2, cp3, w := s.nodes[0], s.nodes[1], s.nodes[2], s.nodes[3]
	r, err := s.client(t, cp1).EtcdSnapshot(ctx(t, cp1), &machine.EtcdSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}

	err = upload(t, s, w, good)
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "etcd recover is only available on control plane nodes") {
		t.Fatalf("EtcdRecover on a worker: %v, want Unimplemented etcd recover is only available on control plane nodes", err)
	}
	// Talos stores the upload whatever etcd does; Bootstrap refuses while etcd has data, on the
	// founder and on a member that joined it.
	if err := upload(t, s, cp1, good); err != nil {
		t.Fatalf("EtcdRecover on a running control plane: %v", err)
	}
	for _, n := range []*Node{cp1, cp2} {
		err := recoverEtcd(t, s, n, false)
		if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "etcd data directory is not empty") {
			t.Fatalf("Bootstrap{recover_etcd} on %s with etcd running: %v, want AlreadyExists etcd data directory is not empty", n.address, err)
		}
	}

	mark := len(s.trust.Timeline())
	wipeEtcd(t, s, cp1, cp2, cp3)
	if got := events(s, mark, TimelineEtcdLost); len(got) != 1 {
		t.Fatalf("etcd-lost entries %q, want one", got)
	}
	for _, n := range []*Node{cp1, cp2, cp3} {
		if st, msg := etcdService(t, s, n); st != "Preparing" || msg != "Running pre state" {
			t.Fatalf("etcd on %s after the wipe: %s %q, want Preparing (waiting for a bootstrap)", n.address, st, msg)
		}
		_, err := s.client(t, n).EtcdMemberList(ctx(t, n), &machine.EtcdMemberListRequest{})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not bootstrapped") {
			t.Fatalf("member list on %s after the wipe: %v, want etcd not running", n.address, err)
		}
	}

	// The upload before the wipe went with EPHEMERAL: the pre-state fails, the call does not.
	if err := recoverEtcd(t, s, cp1, false); err != nil {
		t.Fatalf("Bootstrap{recover_etcd} without an upload: %v, want accepted (the etcd service fails)", err)
	}
	if st, msg := etcdService(t, s, cp1); st != "Failed" || msg != "Failed to run pre stage: error verifying snapshot: open /var/lib/etcd.snapshot: no such file or directory" {
		t.Fatalf("etcd after a recovery without an upload: %s %q", st, msg)
	}

	// A snapshot whose database does not match its trailer: etcdutl's restore refuses it after
	// copying it into etcd's data directory.
	bad := slices.Clone(good)
	bad[len(bad)-40] ^= 0xff
	if err := upload(t, s, cp3, bad); err != nil {
		t.Fatal(err)
	}
	if err := recoverEtcd(t, s, cp3, false); err != nil {
		t.Fatal(err)
	}
	if st, msg := etcdService(t, s, cp3); st != "Failed" || !strings.HasPrefix(msg, "Failed to run pre stage: error recovering from the snapshot: expected sha256") {
		t.Fatalf("etcd after a recovery from a corrupt snapshot: %s %q", st, msg)
	}
	err = recoverEtcd(t, s, cp3, true)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("Bootstrap after a failed restore: %v, want AlreadyExists (its files stay)", err)
	}

	mark = len(s.trust.Timeline())
	if err := upload(t, s, cp1, good); err != nil {
		t.Fatal(err)
	}
	if err := recoverEtcd(t, s, cp1, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cp2 joins the recovered member", func() bool {
		got, err := s.client(t, cp1).EtcdMemberList(ctx(t, cp1), &machine.EtcdMemberListRequest{})
		return err == nil && len(got.GetMessages()[0].GetMembers()) == 2
	})
	if got, want := members(t, s, cp2), []string{host(cp1), host(cp2)}; !slices.Equal(got, want) {
		t.Fatalf("members after the recovery %q, want %q (cp3's etcd failed)", got, want)
	}
	path := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		t.Fatal(err)
	}
	var detail string
	for _, e := range s.trust.Timeline()[mark:] {
		if e.Event == TimelineBootstrap {
			detail = e.Detail
		}
	}
	if want := fmt.Sprintf("recover: hash %08x, revision %d, total keys %d, total size %d", st.Hash, st.Revision, st.TotalKey, st.TotalSize); detail != want {
		t.Fatalf("bootstrap entry %q, want %q", detail, want)
	}
	want := []string{TimelineEtcdRecover + " " + cp1.address.String(), TimelineBootstrap + " " + cp1.address.String(),
		TimelineEtcdMemberAdded + " " + cp2.address.String(), TimelineEtcdLearnerPromoted + " " + cp2.address.String()}
	if got := events(s, mark, TimelineEtcdRecover, TimelineBootstrap, TimelineEtcdMemberAdded, TimelineEtcdLearnerPromoted); !slices.Equal(got, want) {
		t.Fatalf("timeline %q, want %q", got, want)
	}
	// The upload was used up: a second recovery is refused as the data directory holds data.
	if err := recoverEtcd(t, s, cp1, false); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a second recovery: %v, want AlreadyExists", err)
	}
}

// TestAControlPlaneWipedAloneRejoinsWithANewMember: one control plane at a time reset without
// leaving, EPHEMERAL wiped: at its boot it finds its old member by name, removes it and joins as
// a new one (services/etcd.go addMember), so the cluster keeps its etcd through a rolling wipe of
// every control plane.
func TestAControlPlaneWipedAloneRejoinsWithANewMember(t *testing.T) {
	s := newSim(t, 23, 3, 0)
	mark := len(s.trust.Timeline())
	for _, n := range s.nodes {
		before := n.etcdMemberID
		wipeEtcd(t, s, n)
		eventually(t, n.address.String()+" rejoins", func() bool {
			got, err := s.client(t, s.nodes[0]).EtcdMemberList(ctx(t, s.nodes[0]), &machine.EtcdMemberListRequest{})
			if err != nil {
				return false
			}
			var ids []uint64
			for _, m := range got.GetMessages()[0].GetMembers() {
				ids = append(ids, m.GetId())
			}
			n.mu.Lock()
			id := n.etcdMemberID
			n.mu.Unlock()
			return len(ids) == 3 && id != 0 && id != before && slices.Contains(ids, id) && !slices.Contains(ids, before)
		})
	}
	if got := events(s, mark, TimelineEtcdLost); len(got) != 0 {
		t.Fatalf("a rolling wipe lost the cluster's etcd: %q", got)
	}
	var want []string
	for _, n := range s.nodes {
		want = append(want, TimelineEtcdMemberRemoved+" "+n.address.String(), TimelineEtcdMemberAdded+" "+n.address.String())
	}
	if got := events(s, mark, TimelineEtcdMemberRemoved, TimelineEtcdMemberAdded); !slices.Equal(got, want) {
		t.Fatalf("timeline %q, want %q", got, want)
	}
}
