package rollout

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/siderolabs/go-kubernetes/kubernetes/upgrade"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

// nodeState is a node's COSI state as the checks read it: a kube-apiserver static pod with the
// given command and a kubelet spec with the given args.
func nodeState(t *testing.T, apiServer, kubelet []string) state.State {
	t.Helper()
	st := state.WrapCore(namespaced.NewState(inmem.Build))
	if apiServer != nil {
		pod := k8s.NewStaticPod(k8s.NamespaceName, k8s.APIServerID)
		command := make([]any, len(apiServer))
		for i, a := range apiServer {
			command[i] = a
		}
		pod.TypedSpec().Pod = map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "kube-apiserver", "command": command}}}}
		if err := st.Create(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	spec := k8s.NewKubeletSpec(k8s.NamespaceName, k8s.KubeletID)
	spec.TypedSpec().Args = kubelet
	if err := st.Create(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLiveRemovedItemsNameNodeComponentAndItem(t *testing.T) {
	states := map[string]state.State{
		"cp-1":     nodeState(t, []string{"/usr/local/bin/kube-apiserver", "--feature-gates=PodDisruptionConditions=true,Other=false"}, []string{"--v=2"}),
		"worker-1": nodeState(t, nil, []string{"--cloud-config=/etc/x"}),
	}
	provider := func(_ context.Context, name string) (state.State, error) { return states[name], nil }
	check := func(from, to string) []string {
		path, err := upgrade.NewPath(from, to)
		if err != nil {
			t.Fatal(err)
		}
		got, err := removedItemsWith(context.Background(), path, provider, nil, []string{"cp-1"}, []string{"worker-1"})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := []string{
		"cp-1 runs kube-apiserver with feature gate PodDisruptionConditions, removed in Kubernetes 1.34: remove it from cluster.apiServer.extraArgs first (go-kubernetes upgrade checks)",
		"worker-1 runs kubelet with flag --cloud-config, removed in Kubernetes 1.34: remove it from machine.kubelet.extraArgs first (go-kubernetes upgrade checks)",
	}
	if got := check("1.33.4", "1.34.1"); !slices.Equal(got, want) {
		t.Errorf("1.33 -> 1.34:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The same flags are fine for a patch upgrade and for the step before.
	if got := check("1.33.1", "1.33.4"); len(got) != 0 {
		t.Errorf("1.33 -> 1.33: %q", got)
	}
	if got := check("1.32.1", "1.33.4"); len(got) != 0 {
		t.Errorf("1.32 -> 1.33: %q", got)
	}
}

func TestRemovedItemProblemsWordsRemovedResources(t *testing.T) {
	got := RemovedItemProblems(upgrade.ComponentRemovedItemsError{APIResources: map[string]int{"podgroups.v1alpha2.scheduling.k8s.io": 3}}, "1.37")
	want := []string{"the cluster stores 3 podgroups.v1alpha2.scheduling.k8s.io, removed in Kubernetes 1.37: migrate them to a served version first (go-kubernetes upgrade checks)"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
