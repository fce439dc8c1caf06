package node

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/client"
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

// manifestObject is the object of kind/name in the node's Manifest id, nil when there is none.
func manifestObject(t *testing.T, n *Node, c *client.Client, id, kind, name string) map[string]any {
	t.Helper()
	res, err := safe.StateGetByID[*k8s.Manifest](ctx(t, n), c.COSI, id)
	if state.IsNotFoundError(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("manifest %s: %v", id, err)
	}
	for _, item := range res.TypedSpec().Items {
		meta, _ := item.Object["metadata"].(map[string]any)
		if item.Object["kind"] == kind && meta["name"] == name {
			return item.Object
		}
	}
	return nil
}

func containerImage(obj map[string]any) string {
	spec, _ := obj["spec"].(map[string]any)
	template, _ := spec["template"].(map[string]any)
	podSpec, _ := template["spec"].(map[string]any)
	containers, _ := podSpec["containers"].([]any)
	if len(containers) == 0 {
		return ""
	}
	c, _ := containers[0].(map[string]any)
	image, _ := c["image"].(string)
	return image
}

// A control plane renders its bootstrap manifests from the active config (Talos'
// ManifestController): CoreDNS with cluster.coreDNS.image, kube-proxy with cluster.proxy.image
// unless the proxy is disabled, the RBAC Talos' nodes need; a config change re-renders them.
func TestAControlPlaneRendersItsBootstrapManifestsFromTheConfig(t *testing.T) {
	cl := newCluster(t, "lab")
	n, err := New("127.0.29.11", APIPort, "v1.14.1", bootedSchematic, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	dns := manifestObject(t, n, c, "11-core-dns", "Deployment", "coredns")
	if dns == nil || !strings.HasPrefix(containerImage(dns), "registry.k8s.io/coredns/coredns:") {
		t.Fatalf("CoreDNS Deployment %v", dns)
	}
	if _, ok := dns["status"]; ok {
		t.Error("a rendered manifest carries a status")
	}
	proxy := manifestObject(t, n, c, "10-kube-proxy", "DaemonSet", "kube-proxy")
	if proxy == nil || !strings.Contains(containerImage(proxy), "kube-proxy:") {
		t.Fatalf("kube-proxy DaemonSet %v", proxy)
	}
	if manifestObject(t, n, c, "11-talos-node-rbac-template", "ClusterRole", "system:talos-nodes") == nil {
		t.Error("no system:talos-nodes ClusterRole")
	}
	if manifestObject(t, n, c, "11-core-dns-svc", "Service", "kube-dns") == nil {
		t.Error("no kube-dns Service")
	}

	changed := patched(t, cl.controlPlane, "cluster:\n  coreDNS:\n    image: registry.k8s.io/coredns/coredns:v1.12.9\n  proxy:\n    disabled: true\n")
	if err := apply(t, c, n, changed); err != nil {
		t.Fatal(err)
	}
	if got := containerImage(manifestObject(t, n, c, "11-core-dns", "Deployment", "coredns")); got != "registry.k8s.io/coredns/coredns:v1.12.9" {
		t.Errorf("CoreDNS image after the change %q", got)
	}
	if got := manifestObject(t, n, c, "10-kube-proxy", "DaemonSet", "kube-proxy"); got != nil {
		t.Error("kube-proxy's manifest stays with the proxy disabled")
	}
}
