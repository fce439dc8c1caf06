package rollout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/talosnode/node"
)

// Snapshots says where etcd snapshots go on the machine that runs the rollout.
type Snapshots struct {
	// Dir is the folder; created (0700) when missing.
	Dir string
	// Prefix starts every file name: the stack, so stacks can share a folder.
	Prefix string
	// Keep is how many snapshots to keep per node (older ones are removed); default 5.
	Keep int
}

// snapshotTime is in the name so names sort by time.
const snapshotTime = "20060102T150405.000Z"

// Take streams a snapshot of etcd from the control plane into
// <Dir>/<Prefix>-<node>-<time>.db (mode 0600), verifies it as talosctl does (a bbolt database
// followed by its sha256), and removes all but the newest Keep of that node's.
func (s Snapshots) Take(ctx context.Context, t node.Target, creds node.Credentials, now time.Time) (string, error) {
	if s.Dir == "" {
		return "", fmt.Errorf("no snapshot folder configured")
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return "", err
	}
	name := t.Name
	if name == "" {
		name = t.Address
	}
	base := fmt.Sprintf("%s-%s-", s.Prefix, name)
	path := filepath.Join(s.Dir, base+now.UTC().Format(snapshotTime)+".db")

	c, err := node.Dial(ctx, t, creds)
	if err != nil {
		return "", err
	}
	defer c.Close() //nolint:errcheck
	r, err := c.EtcdSnapshot(ctx, &machine.EtcdSnapshotRequest{})
	if err != nil {
		return "", fmt.Errorf("EtcdSnapshot: %s", node.Describe(err))
	}
	defer r.Close() //nolint:errcheck

	part := path + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = VerifySnapshot(part)
	}
	if err != nil {
		_ = os.Remove(part)
		return "", err
	}
	if err := os.Rename(part, path); err != nil {
		return "", err
	}
	return path, s.prune(base)
}

// VerifySnapshot checks a file as talosctl etcd snapshot does before it keeps one: etcd's
// snapshot is a bbolt database (whole 512-byte pages) followed by the sha256 of the database.
func VerifySnapshot(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	const trailer = sha256.Size
	if len(data) < trailer || len(data)%512 != trailer {
		return fmt.Errorf("snapshot %s is %d bytes: not a database of whole 512-byte pages plus a %d-byte sha256", filepath.Base(path), len(data), trailer)
	}
	db, sum := data[:len(data)-trailer], data[len(data)-trailer:]
	got := sha256.Sum256(db)
	if !bytes.Equal(got[:], sum) {
		return fmt.Errorf("snapshot %s: sha256 of the database is %x, the trailer says %x", filepath.Base(path), got, sum)
	}
	return nil
}

// prune removes a node's snapshots beyond the newest Keep.
func (s Snapshots) prune(base string) error {
	keep := s.Keep
	if keep <= 0 {
		keep = 5
	}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return err
	}
	var mine []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base)
		// <time>.db exactly: a node whose name extends this one's ("cp-1" and "cp-1-b") is not ours.
		if ok && strings.HasSuffix(rest, ".db") && len(rest) == len(snapshotTime)+len(".db") {
			mine = append(mine, e.Name())
		}
	}
	slices.Sort(mine)
	for len(mine) > keep {
		// A scheduled snapshot (npm run snapshot) may prune the same node's files at the same time.
		if err := os.Remove(filepath.Join(s.Dir, mine[0])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		mine = mine[1:]
	}
	return nil
}
