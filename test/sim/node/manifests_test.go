package node

import (
	"strconv"
	"testing"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

// talosctl 1.13+ health reads a control plane's BootstrapManifestsConfig and skips the
// node-readiness checks when its cniName is "none"; the field exists from Talos 1.13 on.
func TestBootstrapManifestsConfigCarriesTheCNINameFrom113(t *testing.T) {
	cl := newCluster(t, "lab")
	for _, tc := range []struct {
		version, patch, want string
	}{
		{"v1.11.5", "", ""},
		{"v1.13.9", "", "flannel"},
		{"v1.13.9", "cluster:\n  network:\n    cni:\n      name: none\n", "none"},
	} {
		addr := "127.0.7." + strconv.Itoa(int(nextHost.Add(1))+10)
		n, err := New(addr, APIPort, tc.version, bootedSchematic, trust)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		cfg := cl.controlPlane
		if tc.patch != "" {
			cfg = patched(t, cfg, tc.patch)
		}
		if err := apply(t, insecure(t, n), n, cfg); err != nil {
			t.Fatal(err)
		}
		c := mutual(t, n, cl.talosconfig)
		res, err := safe.StateGetByID[*k8s.BootstrapManifestsConfig](ctx(t, n), c.COSI, k8s.BootstrapManifestsConfigID)
		if err != nil {
			t.Fatalf("%s: %v", tc.version, err)
		}
		if got := res.TypedSpec().CNIName; got != tc.want {
			t.Errorf("%s with %q: cniName %q, want %q", tc.version, tc.patch, got, tc.want)
		}
	}
}
