package node

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

func contractName(c *config.VersionContract) string {
	return fmt.Sprintf("contract %d.%d", c.Major, c.Minor)
}

// startNodeRunning is startNode on a Talos release.
func startNodeRunning(t *testing.T, release string, opts ...Option) *Node {
	t.Helper()
	addr := "127.0.7." + strconv.Itoa(int(nextHost.Add(1))+10)
	n, err := New(addr, APIPort, release, bootedSchematic, trust, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// A config of either contract configures a cluster: its name, Kubernetes CA, network, kubelet and
// control-plane component settings and node labels and taints are read through machinery's K8s*
// accessors, which serve the v1alpha1 sections (1.11 contract) and the Kube* documents (1.14).
func TestAClusterOfEitherContractRunsOnEveryRelease(t *testing.T) {
	for _, release := range []string{"v1.11.5", "v1.14.1"} {
		for _, contract := range contracts {
			t.Run(release+" "+contractName(contract), func(t *testing.T) {
				cp, w, cl := startNodeRunning(t, release), startNodeRunning(t, release), newClusterOf(t, "lab", contract)
				if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
					t.Fatal(err)
				}
				if err := apply(t, insecure(t, w), w, cl.worker); err != nil {
					t.Fatal(err)
				}
				bootstrap(t, cp, cl)
				if got := cp.State().ClusterName; got != "lab" {
					t.Errorf("cluster name %q, want lab", got)
				}
				c := mutual(t, cp, cl.talosconfig)
				kubelet, err := safe.StateGetByID[*k8s.KubeletConfig](ctx(t, cp), c.COSI, k8s.KubeletID)
				if err != nil {
					t.Fatal(err)
				}
				if got := kubelet.TypedSpec(); got.Image != "ghcr.io/siderolabs/kubelet:v1.34.1" || got.ClusterDomain != "cluster.local" {
					t.Errorf("KubeletConfig image %q domain %q", got.Image, got.ClusterDomain)
				}
				api, err := safe.StateGetByID[*k8s.APIServerConfig](ctx(t, cp), c.COSI, k8s.APIServerConfigID)
				if err != nil {
					t.Fatal(err)
				}
				if got := api.TypedSpec(); got.Image != "registry.k8s.io/kube-apiserver:v1.34.1" || !slices.Equal(got.ServiceCIDRs, []string{"10.96.0.0/12"}) ||
					got.ControlPlaneEndpoint != "https://127.0.7.1:6443" {
					t.Errorf("APIServerConfig image %q service CIDRs %v endpoint %q", got.Image, got.ServiceCIDRs, got.ControlPlaneEndpoint)
				}
				node := cp.State().KubernetesNode
				if node == nil {
					t.Fatal("the control plane registered no Node")
				}
				if want := withLabels(kubeletLabelsOf(cp), generatedControlPlaneLabels); !maps.Equal(node.Labels, want) ||
					!slices.Equal(node.Taints, []Taint{{Key: labelControlPlane, Effect: "NoSchedule"}}) || node.Error != "" {
					t.Errorf("control plane's Node: labels %v taints %v error %q", node.Labels, node.Taints, node.Error)
				}
				// The worker joined the same cluster (same name and Kubernetes CA): its Node is there.
				if wn := w.State().KubernetesNode; wn == nil || !maps.Equal(wn.Labels, kubeletLabelsOf(w)) || len(wn.Taints) != 0 {
					t.Errorf("worker's Node: %+v", wn)
				}
			})
		}
	}
}

// Talos 1.14 registers a node with every taint of its config (controllers/k8s/kubelet_config.go
// RegisterWithTaints = K8sNodeConfig().Taints(), kubelet_spec.go), so a worker's nodeTaints are
// set at registration and the node-apply update that follows changes none: NodeRestriction lets
// it through. Up to 1.13 only a control plane's own taint is registered (the 1.11 case is in
// TestNodeLabelsAndTaintsGoThroughNodeRestrictionOnWorkers).
func TestA114WorkerRegistersWithItsTaints(t *testing.T) {
	cp, w, cl := startNodeRunning(t, "v1.14.1"), startNodeRunning(t, "v1.14.1"), newCluster(t, "lab")
	if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	patch := "machine:\n  nodeTaints: {dedicated: \"gpu:NoSchedule\"}\n  nodeLabels: {example.com/tier: web}\n"
	if err := apply(t, insecure(t, w), w, patched(t, cl.worker, patch)); err != nil {
		t.Fatal(err)
	}
	bootstrap(t, cp, cl)
	got := w.State().KubernetesNode
	if got == nil {
		t.Fatal("no Node registered after bootstrap")
	}
	want := withLabels(kubeletLabelsOf(w), map[string]string{"example.com/tier": "web"})
	if !maps.Equal(got.Labels, want) || !slices.Equal(got.Taints, []Taint{{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}}) || got.Error != "" {
		t.Fatalf("Node %s: labels %v taints %v error %q", got.Name, got.Labels, got.Taints, got.Error)
	}
}
