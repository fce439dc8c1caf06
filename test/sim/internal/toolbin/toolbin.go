// Package toolbin finds, for the simulator's tests, the binaries `npm run setup` builds (talosctl,
// etcd, kube-apiserver) and free loopback ports to start nodes on.
package toolbin

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Binary is $<env>, else the one npm run setup links as node_modules/.bin/<name>. Without it the
// test is skipped, or fails when CI=true: CI must not pass by skipping.
func Binary(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(root, "node_modules", ".bin", name)
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("%s not found at %s (%v): run `npm run setup`, which builds it and links node_modules/.bin/%s, or set %s", name, path, err, name, env)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// repoRoot is the folder above this module that holds scripts/setup.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "scripts", "setup.sh")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no scripts/setup.sh above %s", dir)
}

// FreePort is a port nothing listens on at host: the nodes of these tests do not take apid's
// 50000, which a simulator started by hand or the demo may hold.
func FreePort(t *testing.T, host string) int {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close() //nolint:errcheck
	return lis.Addr().(*net.TCPAddr).Port
}
