// Package recovery brings a cluster whose etcd was lost back from a snapshot, as
// `talosctl bootstrap --recover-from` does (talosctl v1.11.5 cmd/talosctl/cmd/talos/bootstrap.go):
// the snapshot is read and checked on this machine, every control plane is asked whether its
// etcd is empty and waiting for the bootstrap, and then the bootstrap control plane gets the file
// (EtcdRecover) and the bootstrap that restores from it (Bootstrap with recover_etcd).
package recovery

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"talos-cluster/talosnode/rollout"
)

// Snapshot is what a snapshot file holds, as `etcdutl snapshot status` reports it (the numbers
// talosctl prints before it recovers) and the file's own sha256.
type Snapshot struct {
	// Path is the file.
	Path string
	// Sha256 is the sha256 of the whole file, hex (what sha256sum prints).
	Sha256 string
	// Revision is etcd's revision at the snapshot: the newest in its key bucket.
	Revision int64
	// Keys counts the entries of every bucket, as etcdutl's "total keys".
	Keys int
	// Hash is etcdutl's hash: crc32 (Castagnoli) over every bucket's name, keys and values.
	Hash uint32
	// Size is the file's size in bytes.
	Size int64
}

// Inspect checks a snapshot as talosctl etcd snapshot does before it keeps one (whole 512-byte
// pages followed by the sha256 of the database: rollout.VerifySnapshot) and reads it as etcdutl's
// status does. Errors name the file and what is wrong with it.
func Inspect(path string) (Snapshot, error) {
	info, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Snapshot{}, fmt.Errorf("snapshot %s: no such file", path)
		}
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", path, err)
	}
	if info.IsDir() {
		return Snapshot{}, fmt.Errorf("snapshot %s is a folder, not a file: name one of the .db files the rollout wrote in it", path)
	}
	if err := rollout.VerifySnapshot(path); err != nil {
		return Snapshot{}, fmt.Errorf("%w (in %s)", err, filepath.Dir(path))
	}
	sum, err := fileSha256(path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", path, err)
	}
	s := Snapshot{Path: path, Sha256: sum, Size: info.Size()}
	if err := s.readDatabase(); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: the sha256 matches, but the database does not read: %w", path, err)
	}
	return s, nil
}

func fileSha256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close() //nolint:errcheck
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readDatabase reads the bbolt database as etcdutl v3 snapshot Status does: bbolt's own
// consistency check, then every bucket in order, hashing names, keys and values, counting keys,
// and taking the revision from the key bucket (keys there are the revision: 8 bytes main,
// big-endian, then '_' and 8 bytes sub).
func (s *Snapshot) readDatabase() error {
	db, err := bolt.Open(s.Path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close() //nolint:errcheck
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			return cerr
		}
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("bucket %q does not open", name)
			}
			h.Write(name) //nolint:errcheck // a hash never fails
			keyBucket := string(name) == "key"
			if err := b.ForEach(func(k, v []byte) error {
				h.Write(k) //nolint:errcheck
				h.Write(v) //nolint:errcheck
				if keyBucket && len(k) >= 8 {
					s.Revision = int64(binary.BigEndian.Uint64(k[:8])) //nolint:gosec // etcd's revisions are int64
				}
				s.Keys++
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	s.Hash = h.Sum32()
	return err
}

// Describe is the snapshot in one line: "lab-cp-1-20250101T000000.000Z.db: revision 42, 17 keys,
// sha256 ab12…".
func (s Snapshot) Describe() string {
	return fmt.Sprintf("%s: revision %d, %d keys, etcd hash %08x, sha256 %s", s.Path, s.Revision, s.Keys, s.Hash, s.Sha256)
}
