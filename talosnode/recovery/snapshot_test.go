package recovery_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"talos-cluster/talosnode/recovery"
)

// snapshotFile writes what etcd's snapshot is: a bbolt database with a key bucket whose keys are
// revisions (8 bytes main, '_', 8 bytes sub) and a meta bucket, followed by its sha256.
func snapshotFile(t *testing.T, revisions ...uint64) string {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	db, err := bolt.Open(dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		keys, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for _, rev := range revisions {
			k := make([]byte, 17)
			binary.BigEndian.PutUint64(k, rev)
			k[8] = '_'
			if err := keys.Put(k, []byte("a key-value")); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return meta.Put([]byte("consistent_index"), []byte{0, 0, 0, 0, 0, 0, 0, 9})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, "lab-cp-1-20260101T000000.000Z.db")
	if err := os.WriteFile(path, append(data, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspectReadsTheRevisionKeysAndSha256OfASnapshot(t *testing.T) {
	path := snapshotFile(t, 2, 3, 41)
	got, err := recovery.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	sum := sha256.Sum256(data)
	if got.Revision != 41 || got.Keys != 4 || got.Sha256 != hex.EncodeToString(sum[:]) || got.Size != int64(len(data)) {
		t.Errorf("got revision %d, %d keys, sha256 %s, %d bytes; want revision 41, 4 keys (3 in key, 1 in meta), sha256 %x, %d bytes",
			got.Revision, got.Keys, got.Sha256, got.Size, sum, len(data))
	}
	line := got.Describe()
	for _, want := range []string{path, "revision 41", "4 keys", "sha256 " + got.Sha256} {
		if !strings.Contains(line, want) {
			t.Errorf("Describe() = %q, want it to contain %q", line, want)
		}
	}
}

func TestInspectRefusesAFileThatFailsTalosctlsCheckNamingIt(t *testing.T) {
	good := snapshotFile(t, 5)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte{}, data...)
	flipped[len(flipped)-1] ^= 0xff
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"missing", filepath.Join(dir, "gone.db"), []string{"gone.db", "no such file"}},
		{"a folder", dir, []string{dir, "is a folder"}},
		{"cut short", write("short.db", data[:len(data)-100]), []string{"short.db", "not a database of whole 512-byte pages plus a 32-byte sha256"}},
		{"a trailer that does not match", write("flipped.db", flipped), []string{"flipped.db", "sha256 of the database is", "the trailer says"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := recovery.Inspect(tc.path)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
