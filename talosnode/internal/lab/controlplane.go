package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	simnode "talos-cluster/sim/node"
)

// RealControlPlane makes the lab's bootstrapped cluster run a real etcd and kube-apiserver (the
// binaries `npm run setup` builds: $ETCD and $KUBE_APISERVER, else node_modules/.bin), stopped
// when the test ends. Without them the test is skipped, or fails when CI=true.
func (l *Lab) RealControlPlane(t *testing.T) {
	t.Helper()
	cp := simnode.ControlPlane{Etcd: binary(t, "ETCD", "etcd"), KubeAPIServer: binary(t, "KUBE_APISERVER", "kube-apiserver"), Delay: -1}
	if err := l.Trust.RunControlPlane(cp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Trust.Close)
}

func binary(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "scripts", "setup.sh")); err == nil {
				path = filepath.Join(d, "node_modules", ".bin", name)
				break
			}
		}
	}
	if _, err := os.Stat(path); path == "" || err != nil {
		msg := fmt.Sprintf("%s not found (%q): run `npm run setup`, which links node_modules/.bin/%s, or set %s", name, path, name, env)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}
