package node

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

// kubeletLabelsOf are the labels every kubelet registers its Node with.
func kubeletLabelsOf(n *Node) map[string]string {
	name := "talos-" + n.address.String()
	return map[string]string{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
	}
}

func withLabels(base map[string]string, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, extra)
	return out
}

// generatedControlPlaneLabels: Talos' generated control plane config sets the first in
// machine.nodeLabels; the node-apply controller adds the role label.
var generatedControlPlaneLabels = map[string]string{
	"node.kubernetes.io/exclude-from-external-load-balancers": "",
	"node-role.kubernetes.io/control-plane":                   "",
}

func TestNodeLabelsAndTaintsGoThroughNodeRestrictionOnWorkers(t *testing.T) {
	controlPlaneTaint := Taint{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}
	for _, tc := range []struct {
		name         string
		controlPlane bool
		patch        string
		labels       map[string]string // beyond the kubelet's
		taints       []Taint
		err          string // with %s for the Node name
	}{
		{
			name:  "a worker's nodeTaints are refused, and with them its labels",
			patch: "machine:\n  nodeTaints: {dedicated: \"gpu:NoSchedule\"}\n  nodeLabels: {example.com/tier: web}\n",
			err:   `nodes "%[1]s" is forbidden: node "%[1]s" is not allowed to modify taints`,
		},
		{
			name: "a worker registers with registerWithTaints and sets an allowed label",
			patch: "machine:\n  nodeLabels: {node.kubernetes.io/pool: gpu, example.com/tier: web}\n" +
				"  kubelet:\n    extraConfig:\n      registerWithTaints: [{key: dedicated, value: gpu, effect: NoSchedule}]\n",
			labels: map[string]string{"node.kubernetes.io/pool": "gpu", "example.com/tier": "web"},
			taints: []Taint{{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}},
		},
		{
			name:  "a worker with a forbidden label key gets none of its labels",
			patch: "machine:\n  nodeLabels: {node-role.kubernetes.io/storage: \"\", example.com/disk: ssd}\n",
			err:   `nodes "%[1]s" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/storage`,
		},
		{
			name:         "a control plane uses admin credentials",
			controlPlane: true,
			patch:        "machine:\n  nodeLabels: {node-role.kubernetes.io/storage: \"\"}\n  nodeTaints: {dedicated: \"storage:NoSchedule\"}\n",
			labels:       withLabels(generatedControlPlaneLabels, map[string]string{"node-role.kubernetes.io/storage": ""}),
			taints:       []Taint{controlPlaneTaint, {Key: "dedicated", Value: "storage", Effect: "NoSchedule"}},
		},
		{
			name:         "a control plane that allows scheduling has no control-plane taint",
			controlPlane: true,
			patch:        "cluster:\n  allowSchedulingOnControlPlanes: true\n",
			labels:       generatedControlPlaneLabels,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, n, cl := startNode(t), startNode(t), newCluster(t, "lab")
			if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
				t.Fatal(err)
			}
			data := cl.worker
			if tc.controlPlane {
				data = cl.controlPlane
			}
			if err := apply(t, insecure(t, n), n, patched(t, data, tc.patch)); err != nil {
				t.Fatal(err)
			}
			if k := n.State().KubernetesNode; k != nil {
				t.Fatalf("registered before the cluster was bootstrapped: %+v", k)
			}
			bootstrap(t, cp, cl)
			got := n.State().KubernetesNode
			if got == nil {
				t.Fatal("no Node registered after bootstrap")
			}
			want := withLabels(kubeletLabelsOf(n), tc.labels)
			wantErr := ""
			if tc.err != "" {
				wantErr = fmt.Sprintf(tc.err, got.Name)
			}
			if !maps.Equal(got.Labels, want) || !slices.Equal(got.Taints, tc.taints) || got.Error != wantErr {
				t.Fatalf("Node %s:\n labels %v\n taints %v\n error %q\nwant\n labels %v\n taints %v\n error %q",
					got.Name, got.Labels, got.Taints, got.Error, want, tc.taints, wantErr)
			}
		})
	}
}

func TestAWorkerConfiguredAfterBootstrapRegistersAtItsApplyAndOnlyOnce(t *testing.T) {
	cp, worker, cl := startNode(t), startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	bootstrap(t, cp, cl)
	taints := func(value string) []byte {
		return patched(t, cl.worker, "machine:\n  kubelet:\n    extraConfig:\n      registerWithTaints: [{key: dedicated, value: "+value+", effect: NoSchedule}]\n")
	}
	if err := apply(t, insecure(t, worker), worker, taints("gpu")); err != nil {
		t.Fatal(err)
	}
	want := []Taint{{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}}
	if k := worker.State().KubernetesNode; k == nil || !slices.Equal(k.Taints, want) {
		t.Fatalf("after apply: %+v", k)
	}
	// The kubelet registers once; a new registerWithTaints does not touch the existing Node.
	if err := apply(t, mutual(t, worker, cl.talosconfig), worker, taints("tpu")); err != nil {
		t.Fatal(err)
	}
	if k := worker.State().KubernetesNode; !slices.Equal(k.Taints, want) || k.Error != "" {
		t.Fatalf("after a second apply: %+v", k)
	}
	// The control plane registered at bootstrap, with its taint, which Talos then owns.
	if k := cp.State().KubernetesNode; k == nil || !slices.Equal(k.Taints, []Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}) {
		t.Fatalf("control plane: %+v", k)
	}
}

func TestALaterApplyRemovesOnlyTheLabelsTalosSet(t *testing.T) {
	cp, worker, cl := startNode(t), startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	bootstrap(t, cp, cl)
	if err := apply(t, insecure(t, worker), worker, patched(t, cl.worker, "machine:\n  nodeLabels: {example.com/tier: web}\n")); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, mutual(t, worker, cl.talosconfig), worker, cl.worker); err != nil {
		t.Fatal(err)
	}
	if k := worker.State().KubernetesNode; !maps.Equal(k.Labels, kubeletLabelsOf(worker)) || k.Error != "" {
		t.Fatalf("after removing the label: %+v", k)
	}
}

func TestForbiddenLabelsFollowKubernetes(t *testing.T) {
	for key, forbidden := range map[string]bool{
		"node-role.kubernetes.io/worker":            true,
		"node-restriction.kubernetes.io/pool":       true,
		"x.node-restriction.kubernetes.io/pool":     true,
		"kubernetes.io/role":                        true,
		"k8s.io/x":                                  true,
		"sub.k8s.io/x":                              true,
		"kubernetes.io/hostname":                    false,
		"beta.kubernetes.io/instance-type":          false,
		"topology.kubernetes.io/zone":               false,
		"failure-domain.beta.kubernetes.io/region":  false,
		"node.kubernetes.io/pool":                   false,
		"x.kubelet.kubernetes.io/y":                 false,
		"example.com/tier":                          false,
		"tier":                                      false,
		"extensions.talos.dev/intel-ucode":          false,
		"topology.kubernetes.io/something-else-too": true,
	} {
		t.Run(key, func(t *testing.T) {
			if got := forbiddenLabel(key); got != forbidden {
				t.Fatalf("forbiddenLabel(%q) = %t", key, got)
			}
		})
	}
}
