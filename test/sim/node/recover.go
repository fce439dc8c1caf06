package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Disaster recovery from an etcd snapshot, as Talos v1.11.5 does it:
//
//   - a cluster whose every etcd member lost its data (EPHEMERAL wiped, e.g. `talosctl reset
//     --graceful=false --reboot --system-labels-to-wipe=EPHEMERAL` on each control plane) has no
//     etcd left: every control plane's etcd waits in its pre-state for a bootstrap (services/
//     etcd.go buildInitialCluster finds no leader to join), the etcd APIs answer as before any
//     bootstrap, and the real etcd and kube-apiserver of the simulation stop, their data gone
//     (Trust.loseEtcd);
//   - EtcdRecover uploads a snapshot to /var/lib/etcd.snapshot on a control plane;
//   - Bootstrap{recover_etcd} starts etcd in bootstrap mode, which restores the snapshot as a
//     single member with etcdutl (services/etcd.go recoverFromSnapshot: Status, then Restore
//     checking the sha256 trailer unless recover_skip_hash_check, then the file is removed); the
//     other control planes join it as learners and are promoted (members.go). With a real control
//     plane the real etcd starts on the restored data and kube-apiserver on it, so what existed at
//     snapshot time is back.

// recoverySnapshotPath is where EtcdRecover stores the upload (Talos' constants.go
// EtcdRecoverySnapshotPath); etcdDataPath is etcd's data directory (EtcdDataPath).
const (
	recoverySnapshotPath = "/var/lib/etcd.snapshot"
	etcdDataPath         = "/var/lib/etcd"
)

// EtcdRecover is machined's (v1alpha1_server.go EtcdRecover): the upload goes to the recovery
// path, replacing an earlier one; refused with FailedPrecondition while /var/lib (EPHEMERAL) is not
// mounted, which a running simulated machine always has, and on a worker as checkControlplane
// refuses it. Talos takes the upload whatever etcd does: whether it is used is Bootstrap's
// recover_etcd. os:admin only (authz.go).
func (n *Node) EtcdRecover(stream grpc.ClientStreamingServer[common.Data, machine.EtcdRecoverResponse]) error {
	if !n.configured() {
		return errMaintenanceUnimplemented("EtcdRecover")
	}
	if err := n.checkControlplane("etcd recover", "EtcdRecover"); err != nil {
		return err
	}
	var buf bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err // the partial upload is removed, as Talos removes it
		}
		buf.Write(msg.GetBytes())
	}
	n.mu.Lock()
	n.recoverySnapshot = buf.Bytes()
	n.mu.Unlock()
	n.trust.record(n.address.String(), TimelineEtcdRecover, fmt.Sprintf("%d bytes uploaded to %s", buf.Len(), recoverySnapshotPath))
	return stream.SendAndClose(&machine.EtcdRecoverResponse{Messages: []*machine.EtcdRecover{{}}})
}

// recovery is a verified snapshot a cluster's real etcd starts from.
type recovery struct {
	data     []byte
	skipHash bool
}

// restoreSnapshot is the etcd service's recoverFromSnapshot on this machine, with etcdutl's
// library at the release the real etcd runs: Status, then Restore into a data directory (here a
// scratch one: the real etcd restores again into its own, recover.go's Trust.recovered), then the
// upload is removed. On failure the etcd service fails its pre-state with Talos' message; a
// Restore that got as far as the copy leaves files in etcd's data directory (a later Bootstrap is
// AlreadyExists until EPHEMERAL is wiped), as etcdutl's copyAndVerifyDB does. It returns the
// snapshot and the timeline's detail.
func (n *Node) restoreSnapshot(data []byte, skipHash bool) (*recovery, string, error) {
	fail := func(err error, leftovers bool) (*recovery, string, error) {
		n.mu.Lock()
		n.etcdFailed = "Failed to run pre stage: " + err.Error()
		n.etcdDataLeft = n.etcdDataLeft || leftovers
		n.mu.Unlock()
		return nil, "", err
	}
	if data == nil {
		return fail(fmt.Errorf("error verifying snapshot: open %s: no such file or directory", recoverySnapshotPath), false)
	}
	dir, err := os.MkdirTemp("", "talos-sim-recover-")
	if err != nil {
		return fail(err, false)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "etcd.snapshot")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fail(err, false)
	}
	manager := snapshot.NewV3(zap.NewNop())
	st, err := manager.Status(file)
	if err != nil {
		return fail(fmt.Errorf("error verifying snapshot: %s", talosPaths(err, dir)), false)
	}
	peer := "https://" + n.address.String() + ":2380"
	name := n.State().Hostname
	if name == "" {
		name = "default"
	}
	err = manager.Restore(snapshot.RestoreConfig{
		SnapshotPath:   file,
		Name:           name,
		OutputDataDir:  filepath.Join(dir, "etcd"),
		PeerURLs:       []string{peer},
		InitialCluster: name + "=" + peer,
		SkipHashCheck:  skipHash,
	})
	if err != nil {
		_, statErr := os.Stat(filepath.Join(dir, "etcd", "member", "snap"))
		return fail(fmt.Errorf("error recovering from the snapshot: %s", talosPaths(err, dir)), statErr == nil)
	}
	n.mu.Lock()
	n.recoverySnapshot = nil
	n.mu.Unlock()
	detail := fmt.Sprintf("recover: hash %08x, revision %d, total keys %d, total size %d", st.Hash, st.Revision, st.TotalKey, st.TotalSize)
	if skipHash {
		detail += ", hash check skipped"
	}
	return &recovery{data: data, skipHash: skipHash}, detail, nil
}

// talosPaths names the machine's paths in an error about the scratch copies.
func talosPaths(err error, dir string) string {
	msg := strings.ReplaceAll(err.Error(), filepath.Join(dir, "etcd.snapshot"), recoverySnapshotPath)
	return strings.ReplaceAll(msg, filepath.Join(dir, "etcd"), etcdDataPath)
}

// recovered hands the verified snapshot to the cluster's real etcd, which starts from it.
func (t *Trust) recovered(cluster string, r *recovery) {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	t.recoveries[cluster] = r
}

// loseEtcd ends the etcd of each cluster whose every member's data was wiped: its member list
// and leader go, and so does its API server (the real one stops, its folder removed; the
// in-memory one forgets its objects). Every control plane of it then waits for a bootstrap. The
// caller holds clusterMu.
func (t *Trust) loseEtcd(members []member) {
	ids := map[*Node]uint64{}
	for _, m := range members {
		ids[m.node] = m.etcdMemberID
	}
	for _, cluster := range slices.Sorted(func(yield func(string) bool) {
		for c := range t.etcdMembers {
			if !yield(c) {
				return
			}
		}
	}) {
		records := t.etcdMembers[cluster]
		if slices.ContainsFunc(records, func(r etcdRecord) bool { return ids[r.node] == r.id }) {
			continue
		}
		delete(t.etcdMembers, cluster)
		delete(t.etcdLeaders, cluster)
		delete(t.apiServers, cluster)
		detail := "every member's data was wiped: etcd waits for a bootstrap"
		if api, ok := t.realAPIs[cluster]; ok {
			delete(t.realAPIs, cluster)
			// Its :6443 close now; its processes end in the background (Close waits for them).
			if procs, dir, ok := api.stopServing(); ok {
				t.halting.Go(func() { api.kill(procs, dir) })
			}
			detail += "; the real etcd and kube-apiserver stopped, their data removed"
		}
		var addresses []string
		for _, r := range records {
			addresses = append(addresses, r.node.address.String())
		}
		t.record(records[0].node.address.String(), TimelineEtcdLost, detail+" (members "+strings.Join(addresses, ", ")+")")
	}
}

// restoreDataDir restores r into dir/etcd as the data of a single member name at peerURL, as
// the etcd service's recoverFromSnapshot does, for the real etcd.
func restoreDataDir(r *recovery, dir, name, peerURL string) error {
	file := filepath.Join(dir, "etcd.snapshot")
	if err := os.WriteFile(file, r.data, 0o600); err != nil {
		return err
	}
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:   file,
		Name:           name,
		OutputDataDir:  filepath.Join(dir, "etcd"),
		PeerURLs:       []string{peerURL},
		InitialCluster: name + "=" + peerURL,
		SkipHashCheck:  r.skipHash,
	})
	if err != nil {
		return fmt.Errorf("restoring etcd from the snapshot: %w", err)
	}
	return os.Remove(file)
}

// realSnapshot streams the cluster's real etcd's snapshot (etcd's Maintenance.Snapshot, as Talos'
// EtcdSnapshot streams it: the database and its sha256); ok is false without a real etcd running.
func (n *Node) realSnapshot(send func([]byte) error) (size int, ok bool, err error) {
	t := n.trust
	t.clusterMu.Lock()
	api := t.realAPIs[n.member().cluster]
	t.clusterMu.Unlock()
	if api == nil {
		return 0, false, nil
	}
	api.mu.Lock()
	url, stopped := api.etcdURL, api.stopped
	api.mu.Unlock()
	if url == "" || stopped {
		return 0, false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, true, err
	}
	defer client.Close()
	rc, err := client.Snapshot(ctx)
	if err != nil {
		return 0, true, err
	}
	defer rc.Close()
	buf := make([]byte, 1024)
	for {
		k, err := io.ReadFull(rc, buf)
		if k > 0 {
			size += k
			if serr := send(slices.Clone(buf[:k])); serr != nil {
				return size, true, serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return size, true, nil
		}
		if err != nil {
			return size, true, err
		}
	}
}
