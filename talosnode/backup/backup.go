// Package backup takes an etcd snapshot of a cluster outside a rollout (npm run snapshot, the
// scheduled snapshot workflow): with a client certificate minted from the machine CA whose only
// role is os:etcd:backup (Talos lets it call EtcdSnapshot, EtcdStatus, EtcdMemberList and
// EtcdAlarmList, nothing else), from the first control plane whose etcd member says it is healthy,
// into the folder and under the prefix the rollout's snapshots use, kept as those are.
package backup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/role"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/emptypb"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// Input is what the command reads on its standard input, never from its arguments or environment:
// the machine secrets hold every key of the cluster.
type Input struct {
	// MachineSecrets is the talos plugin's machine.Secrets machineSecrets, as the stack's state
	// holds it; only certs.os (the Talos CA and its key) is read.
	MachineSecrets MachineSecrets `json:"machineSecrets"`
	// ControlPlanes are asked in this order: the stack's order.
	ControlPlanes []ControlPlane `json:"controlPlanes"`
}

// ControlPlane is a control plane as the stack declares it: its name (in the snapshot's file
// name) and address (the Talos API's, port 50000 unless it names one).
type ControlPlane struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// MachineSecrets is the part of the machine secrets the snapshot needs.
type MachineSecrets struct {
	Certs struct {
		Os struct {
			Cert string `json:"cert"`
			Key  string `json:"key"`
		} `json:"os"`
	} `json:"certs"`
}

// Options are where the snapshot goes and how long each control plane is given.
type Options struct {
	Snapshots rollout.Snapshots
	// StatusTimeout bounds the health question to one control plane; default 15 s.
	StatusTimeout time.Duration
	// SnapshotTimeout bounds the snapshot stream from one control plane; default 10 minutes.
	SnapshotTimeout time.Duration
}

// Result is the snapshot taken.
type Result struct {
	Node node.Target
	Path string
	Size int64
	// Revision is the etcd revision the snapshot holds (the newest key revision in it), 0 when
	// it holds no key.
	Revision int64
}

// Role is the only role the minted certificate carries.
var Role = role.EtcdBackup

// Credentials are a client configuration with a certificate of role os:etcd:backup alone, valid for
// node.MintedLifetime (one hour) from now, minted from the machine secrets' Talos CA.
func Credentials(s MachineSecrets) (node.Credentials, error) {
	if s.Certs.Os.Cert == "" || s.Certs.Os.Key == "" {
		return node.Credentials{}, errors.New("machineSecrets.certs.os: the Talos CA's cert and key are missing; pass the talos:machine/secrets:Secrets resource's machineSecrets from the stack's state")
	}
	issuer, err := node.NewIssuer(s.Certs.Os.Cert, s.Certs.Os.Key, role.MakeSet(Role))
	if err != nil {
		return node.Credentials{}, fmt.Errorf("machineSecrets.certs.os (the Talos CA): %w", err)
	}
	return issuer.Credentials(0), nil
}

// Take mints the certificate and takes one verified snapshot from the first control plane that
// answers with a healthy etcd member, trying each in order. When none does, the error names
// each control plane, the phase and what it answered.
func Take(ctx context.Context, in Input, opts Options, now time.Time) (Result, error) {
	if len(in.ControlPlanes) == 0 {
		return Result{}, errors.New("controlPlanes: none given; the stack declares at least one node with role controlplane")
	}
	for i, cp := range in.ControlPlanes {
		if cp.Address == "" {
			return Result{}, fmt.Errorf("controlPlanes[%d] (%s): no address", i, cp.Name)
		}
	}
	creds, err := Credentials(in.MachineSecrets)
	if err != nil {
		return Result{}, err
	}
	if opts.StatusTimeout <= 0 {
		opts.StatusTimeout = 15 * time.Second
	}
	if opts.SnapshotTimeout <= 0 {
		opts.SnapshotTimeout = 10 * time.Minute
	}
	var failures []string
	for _, cp := range in.ControlPlanes {
		t := node.Target{Name: cp.Name, Address: cp.Address}
		if err := healthy(ctx, t, creds, opts.StatusTimeout); err != nil {
			failures = append(failures, err.Error())
			continue
		}
		r, err := take(ctx, t, creds, opts, now)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: snapshot: %v", t, err))
			continue
		}
		return r, nil
	}
	return Result{}, fmt.Errorf("no control plane gave a snapshot:\n  %s", strings.Join(failures, "\n  "))
}

// healthy asks the node's etcd member for its status (allowed to os:etcd:backup): it must
// answer, with no errors and a leader.
func healthy(ctx context.Context, t node.Target, creds node.Credentials, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := node.Dial(ctx, t, creds)
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck
	resp, err := c.MachineClient.EtcdStatus(ctx, &emptypb.Empty{})
	if err != nil {
		return fmt.Errorf("%s: etcd status: %s", t, node.Describe(err))
	}
	for _, m := range resp.GetMessages() {
		st := m.GetMemberStatus()
		switch {
		case len(st.GetErrors()) > 0:
			return fmt.Errorf("%s: etcd status: expected a healthy member, seen errors: %s", t, strings.Join(st.GetErrors(), "; "))
		case st.GetLeader() == 0:
			return fmt.Errorf("%s: etcd status: expected a member with a leader, seen none", t)
		}
	}
	return nil
}

func take(ctx context.Context, t node.Target, creds node.Credentials, opts Options, now time.Time) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.SnapshotTimeout)
	defer cancel()
	path, err := opts.Snapshots.Take(ctx, t, creds, now)
	if err != nil {
		return Result{}, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return Result{}, err
	}
	revision, err := Revision(path)
	if err != nil {
		return Result{}, fmt.Errorf("%s verified, but its revision cannot be read: %w", path, err)
	}
	return Result{Node: t, Path: path, Size: info.Size(), Revision: revision}, nil
}

// Revision is the newest revision of the keys in a snapshot (etcd's "key" bucket is keyed by
// revision: 8 bytes main, '_', 8 bytes sub), as etcdutl snapshot status reports it.
func Revision(path string) (int64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close() //nolint:errcheck
	var revision int64
	err = db.View(func(tx *bolt.Tx) error {
		keys := tx.Bucket([]byte("key"))
		if keys == nil {
			return nil
		}
		k, _ := keys.Cursor().Last()
		if len(k) >= 8 {
			revision = int64(binary.BigEndian.Uint64(k[:8])) //nolint:gosec // etcd's revisions are int64
		}
		return nil
	})
	return revision, err
}
