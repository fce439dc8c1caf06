package node

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
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

// A Talos 1.14 control plane serves each component's config twice: the one made of the machine
// config (kube-apiserver...) and final-<component>, made of it and of the Kubernetes root secrets
// (controllers/k8s/control_plane_final.go); the static pod, and its mirror pod's
// talos.dev/config-version, follow the final one (control_plane_static_pod.go). The two versions
// are counted apart: a new service-account issuer changes only the API server's final config.
// A 1.11 control plane has only the first.
func TestA114ControlPlaneRunsItsStaticPodsFromTheFinalConfigs(t *testing.T) {
	old := startNodeRunning(t, "v1.11.5")
	cl := newClusterOf(t, "lab", config.TalosVersion1_14)
	if err := apply(t, insecure(t, old), old, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	if _, err := safe.StateGetByID[*k8s.APIServerConfig](ctx(t, old), mutual(t, old, cl.talosconfig).COSI, k8s.FinalAPIServerConfigID); err == nil {
		t.Error("a 1.11 node serves final-kube-apiserver")
	}

	n := startNodeRunning(t, "v1.14.1")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	get := func(id string) *k8s.APIServerConfig {
		t.Helper()
		res, err := safe.StateGetByID[*k8s.APIServerConfig](ctx(t, n), c.COSI, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return res
	}
	plain, final := get(k8s.APIServerConfigID), get(k8s.FinalAPIServerConfigID)
	if !slices.Contains(final.TypedSpec().Args, "--service-account-issuer=https://127.0.7.1:6443") {
		t.Errorf("final-kube-apiserver args %v", final.TypedSpec().Args)
	}
	if _, err := safe.StateGetByID[*k8s.ControllerManagerConfig](ctx(t, n), c.COSI, k8s.FinalControllerManagerConfigID); err != nil {
		t.Error(err)
	}
	if _, err := safe.StateGetByID[*k8s.SchedulerConfig](ctx(t, n), c.COSI, k8s.FinalSchedulerConfigID); err != nil {
		t.Error(err)
	}
	if got := n.mirrorPods()[0].version; got != final.Metadata().Version().String() {
		t.Errorf("kube-apiserver pod at config version %s, final-kube-apiserver at %s", got, final.Metadata().Version())
	}
	issuer := "apiVersion: v1alpha1\nkind: KubeServiceAccountConfig\nissuer:\n  issuerURL: https://issuer.example.com\n"
	if err := applyMode(t, c, n, patched(t, cl.controlPlane, issuer), machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	plain2, final2 := get(k8s.APIServerConfigID), get(k8s.FinalAPIServerConfigID)
	if !plain2.Metadata().Version().Equal(plain.Metadata().Version()) || final2.Metadata().Version().Equal(final.Metadata().Version()) {
		t.Errorf("versions: kube-apiserver %s -> %s, final-kube-apiserver %s -> %s, want only the final one to move",
			plain.Metadata().Version(), plain2.Metadata().Version(), final.Metadata().Version(), final2.Metadata().Version())
	}
	if got := n.mirrorPods()[0].version; got != final2.Metadata().Version().String() {
		t.Errorf("kube-apiserver pod at config version %s, final-kube-apiserver at %s", got, final2.Metadata().Version())
	}
}
