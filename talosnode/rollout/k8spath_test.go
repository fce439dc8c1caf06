package rollout_test

import (
	"testing"

	"talos-cluster/talosnode/rollout"
)

func TestKubernetesPath(t *testing.T) {
	for _, tc := range []struct {
		from, to, path, problem string
	}{
		{"1.33.1", "1.33.1", "", ""},
		{"1.33.1", "1.33.4", "1.33.1 -> 1.33.4", ""},
		// A patch back within the minor is allowed, as upgrade-k8s allows the same minor.
		{"1.33.4", "1.33.1", "1.33.4 -> 1.33.1", ""},
		{"v1.36.2", "1.37.0", "1.36.2 -> 1.37.0", ""},
		{"1.32.3", "1.34.0", "1.32.3 -> 1.34.0",
			"talos-cluster:kubernetesVersion: 1.34.0 skips 1.33 (the cluster runs 1.32.3); Kubernetes moves one minor at a time: declare a 1.33 release first"},
		{"1.29.0", "1.32.1", "1.29.0 -> 1.32.1",
			"talos-cluster:kubernetesVersion: 1.32.1 skips 1.30, 1.31 (the cluster runs 1.29.0); Kubernetes moves one minor at a time: declare a 1.30 release first"},
		{"1.33.1", "1.32.0", "1.33.1 -> 1.32.0",
			"talos-cluster:kubernetesVersion: 1.32.0 is older than the 1.33.1 the cluster runs: Kubernetes is not downgraded across minors; declare 1.33.x or later"},
		// Beyond go-kubernetes' table: refused as upgrade-k8s refuses it.
		{"1.37.1", "1.38.0", "1.37.1 -> 1.38.0",
			"talos-cluster:kubernetesVersion: 1.37.1 -> 1.38.0 is not an upgrade go-kubernetes' table knows (talosctl upgrade-k8s refuses it)"},
		// Nothing known (a node that did not answer, a config without a kubelet): nothing judged.
		{"", "1.34.0", "", ""},
		{"1.33.1", "", "", ""},
	} {
		path, problem := rollout.KubernetesPath(tc.from, tc.to)
		if path != tc.path || problem != tc.problem {
			t.Errorf("KubernetesPath(%q, %q) = %q, %q\nwant %q, %q", tc.from, tc.to, path, problem, tc.path, tc.problem)
		}
	}
}
