package provider

import (
	"slices"
	"strings"
	"testing"

	"talos-cluster/sim/simtest"
)

// k8sNodes is cp-1, cp-2, worker-1 (pool gpu) and worker-2 at one Kubernetes version; patch goes
// on every node.
func k8sNodes(t *testing.T, l *simtest.Cluster, kubernetes, patch string) []RolloutNode {
	t.Helper()
	var nodes []RolloutNode
	for _, n := range []struct{ name, role, pool string }{{"worker-1", "worker", "gpu"}, {"cp-1", "controlplane", ""}, {"cp-2", "controlplane", ""}, {"worker-2", "worker", ""}} {
		config := l.Worker
		if n.role == "controlplane" {
			config = l.ControlPlane
		}
		p := patch
		if n.pool != "" {
			p = "machine:\n  nodeLabels:\n    node.kubernetes.io/pool: " + n.pool + "\n"
		}
		nodes = append(nodes, RolloutNode{
			Name: n.name, Address: "127.0.0.1", Role: n.role, TalosVersion: "v1.11.5", SchematicID: simtest.Schematic,
			MachineConfiguration: string(config(t, kubernetes, simtest.Installer, p)),
		})
	}
	return nodes
}

func TestTheKubernetesPlanNamesThePathTheOrderAndEachNodesRunningTalos(t *testing.T) {
	l := simtest.New(t)
	recorded := k8sNodes(t, l, "1.33.4", "")
	declared := k8sNodes(t, l, "1.34.1", "")
	// cp-2 was read running Talos 1.10, which stops at Kubernetes 1.33; worker-2 was not read.
	running := map[string]string{"cp-1": "v1.11.5", "cp-2": "v1.10.7", "worker-1": "v1.11.5"}
	got := kubernetesPlan(recorded, declared, 2, running)
	want := []string{
		"Kubernetes 1.33.4 -> 1.34.1: pre-pull images on every node, then kube-apiserver on cp-1, cp-2, then kube-controller-manager on cp-1, cp-2, " +
			"then kube-scheduler on cp-1, cp-2, then kube-proxy, then kubelets: control planes one at a time (cp-1, cp-2), " +
			"workers 2 at a time per pool (pool gpu: worker-1; unlabelled: worker-2); then the bootstrap manifests",
		"cp-1: Kubernetes 1.34.1 on the Talos v1.11.5 it runs: supported (1.29.0 to 1.34.99)",
		"cp-2: Kubernetes 1.34.1 on the Talos v1.10.7 it runs: not supported (kubelet image ghcr.io/siderolabs/kubelet:v1.34.1 is Kubernetes 1.34.1; Talos v1.10.7 supports 1.28.0 to 1.33.99); its Talos v1.11.5 comes first",
		"worker-1: Kubernetes 1.34.1 on the Talos v1.11.5 it runs: supported (1.29.0 to 1.34.99)",
		"worker-2: Kubernetes 1.34.1 on the Talos v1.11.5 recorded for it (the node was not read): supported (1.29.0 to 1.34.99)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTheKubernetesPlanRefusesASkippedMinorAndSkipsADisabledProxy(t *testing.T) {
	l := simtest.New(t)
	noProxy := "cluster:\n  proxy:\n    disabled: true\n"
	got := kubernetesPlan(k8sNodes(t, l, "1.32.3", noProxy), k8sNodes(t, l, "1.34.1", noProxy), 1, nil)
	if len(got) == 0 || !strings.HasPrefix(got[0], "Kubernetes 1.32.3 -> 1.34.1 (refused: talos-cluster:kubernetesVersion: 1.34.1 skips 1.33 (the cluster runs 1.32.3); "+
		"Kubernetes moves one minor at a time: declare a 1.33 release first): pre-pull") || !strings.Contains(got[0], "kube-proxy is disabled (skipped)") {
		t.Errorf("plan: %q", got)
	}
}

func TestTheKubernetesPlanIsEmptyWhenKubernetesStays(t *testing.T) {
	l := simtest.New(t)
	if got := kubernetesPlan(k8sNodes(t, l, "1.34.1", ""), k8sNodes(t, l, "1.34.1", "machine:\n  sysctls:\n    a: \"1\"\n"), 1, nil); len(got) != 0 {
		t.Errorf("plan: %q", got)
	}
}
