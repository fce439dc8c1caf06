package judge

import (
	"errors"
	"reflect"
	"testing"
)

// Removed Kubernetes flags, feature gates and admission plugins, judged with go-kubernetes'
// table for the declared release (removed.go).
func TestRefusesRemovedKubernetesItems(t *testing.T) {
	for _, tc := range []struct {
		name       string
		role       string
		kubernetes string
		patch      string
		messages   []string
	}{
		{
			"a feature gate removed in the declared minor", "controlplane", "1.34.1",
			`{"cluster":{"apiServer":{"extraArgs":{"feature-gates":"PodDisruptionConditions=true,SomethingCurrent=true"}}}}`,
			[]string{"cluster.apiServer.extraArgs: feature gate PodDisruptionConditions was removed in Kubernetes 1.34; remove it (go-kubernetes upgrade checks)"},
		},
		{
			"a feature gate removed before the declared minor stays removed", "controlplane", "1.37.0",
			`{"cluster":{"scheduler":{"extraArgs":{"feature-gates":"PodDisruptionConditions=false"}}}}`,
			[]string{"cluster.scheduler.extraArgs: feature gate PodDisruptionConditions was removed in Kubernetes 1.34; remove it (go-kubernetes upgrade checks)"},
		},
		{
			"a controller-manager flag", "controlplane", "1.34.1",
			`{"cluster":{"controllerManager":{"extraArgs":{"pod-eviction-timeout":"1m"}}}}`,
			[]string{"cluster.controllerManager.extraArgs: flag --pod-eviction-timeout was removed in Kubernetes 1.27; remove it (go-kubernetes upgrade checks)"},
		},
		{
			"an admission plugin", "controlplane", "1.34.1",
			`{"cluster":{"apiServer":{"extraArgs":{"enable-admission-plugins":"NodeRestriction,SecurityContextDeny"}}}}`,
			[]string{"cluster.apiServer.extraArgs: admission plugin SecurityContextDeny was removed in Kubernetes 1.30; remove it (go-kubernetes upgrade checks)"},
		},
		{
			"a kubelet flag on a worker", "worker", "1.35.0",
			`{"machine":{"kubelet":{"extraArgs":{"pod-infra-container-image":"registry.k8s.io/pause:3.10"}}}}`,
			[]string{"machine.kubelet.extraArgs: flag --pod-infra-container-image was removed in Kubernetes 1.35; remove it (go-kubernetes upgrade checks)"},
		},
		{
			"several at once, in the order of their removal", "controlplane", "1.34.1",
			`{"cluster":{"apiServer":{"extraArgs":{"feature-gates":"PodDisruptionConditions=true,CPUManager=true"}}},"machine":{"kubelet":{"extraArgs":{"cloud-config":"/x"}}}}`,
			[]string{
				"cluster.apiServer.extraArgs: feature gate CPUManager was removed in Kubernetes 1.33; remove it (go-kubernetes upgrade checks)",
				"machine.kubelet.extraArgs: flag --cloud-config was removed in Kubernetes 1.34; remove it (go-kubernetes upgrade checks)",
				"cluster.apiServer.extraArgs: feature gate PodDisruptionConditions was removed in Kubernetes 1.34; remove it (go-kubernetes upgrade checks)",
			},
		},
		{"still there in the declared minor", "controlplane", "1.33.4", `{"cluster":{"apiServer":{"extraArgs":{"feature-gates":"PodDisruptionConditions=true"}}}}`, nil},
		{"a pod-infra image before 1.35", "worker", "1.34.1", `{"machine":{"kubelet":{"extraArgs":{"pod-infra-container-image":"registry.k8s.io/pause:3.10"}}}}`, nil},
		// A worker runs no control-plane pod: its cluster section's extraArgs are never used.
		{"control-plane args on a worker", "worker", "1.34.1", `{"cluster":{"apiServer":{"extraArgs":{"feature-gates":"PodDisruptionConditions=true"}}}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := map[string]string{"controlplane": "cp-1", "worker": "w-1"}[tc.role]
			in := input(node(name, tc.role, chain{all: []Patch{{Key: keyAll, Patch: tc.patch}}}))
			in.KubernetesVersion = tc.kubernetes
			r := mustJudge(t, in)
			var want []Finding
			for _, m := range tc.messages {
				want = append(want, Finding{Key: keyAll, Node: name, Message: m})
			}
			if len(r.Problems) != len(want) || (len(want) > 0 && !reflect.DeepEqual(r.Problems, want)) {
				t.Errorf("problems:\n got %q\nwant %q", r.Problems, want)
			}
		})
	}
}

// The first patch after which a removed item appears is blamed, not a later one that keeps it.
func TestBlamesRemovedItemOnThePatchThatAddsIt(t *testing.T) {
	gate := `{"cluster":{"apiServer":{"extraArgs":{"feature-gates":"PodDisruptionConditions=true"}}}}`
	in := input(node("cp-1", "controlplane", chain{
		all:  []Patch{{Key: keyAll, Patch: timeServers}},
		role: []Patch{{Key: keyControlRole, Patch: gate}},
		own:  []Patch{{Key: keyOwn, Patch: gate}},
	}))
	r := mustJudge(t, in)
	want := []Finding{{keyControlRole, "cp-1", "cluster.apiServer.extraArgs: feature gate PodDisruptionConditions was removed in Kubernetes 1.34; remove it (go-kubernetes upgrade checks)"}}
	if !reflect.DeepEqual(r.Problems, want) {
		t.Errorf("problems:\n got %q\nwant %q", r.Problems, want)
	}
}

// Render, which talosnode applies, refuses the same: one code path judges and renders.
func TestRenderRefusesRemovedItem(t *testing.T) {
	_, _, err := Render(renderInput("controlplane", "v1.11.5",
		Patch{Key: keyAll, Patch: `{"cluster":{"controllerManager":{"extraArgs":{"pod-eviction-timeout":"1m"}}}}`}))
	var refused *RenderError
	want := keyAll + ": cluster.controllerManager.extraArgs: flag --pod-eviction-timeout was removed in Kubernetes 1.27; remove it (go-kubernetes upgrade checks)"
	if !errors.As(err, &refused) || !reflect.DeepEqual(refused.Problems, []string{want}) {
		t.Errorf("want a RenderError %q, got %v", want, err)
	}
}
