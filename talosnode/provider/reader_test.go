package provider_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	p "github.com/pulumi/pulumi-go-provider"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/role"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/provider"
)

// useTalosconfig writes a talosconfig of the lab's cluster with a certificate of the given roles,
// as `talosctl config new --roles` makes it, and gives it to the provider as its refresh
// credential.
func useTalosconfig(t *testing.T, l *simtest.Cluster, roles ...role.Role) {
	t.Helper()
	creds := l.CredentialsWith(t, roles...)
	cfg := &clientconfig.Config{Context: "reader@lab", Contexts: map[string]*clientconfig.Context{
		"reader@lab": {CA: creds.CACertificate, Crt: creds.ClientCertificate, Key: creds.ClientKey},
	}}
	path := filepath.Join(t.TempDir(), "reader.talosconfig")
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	t.Setenv(provider.ReadTalosconfigEnv, path)
}

// diffFields are the top-level properties a diff changes: config for config["machine.type"].
func diffFields(d p.DiffResponse) []string {
	var fields []string
	for k := range d.DetailedDiff {
		path, err := presource.ParsePropertyPath(k)
		if err != nil {
			panic(err)
		}
		if top := path[0].(string); !slices.Contains(fields, top) {
			fields = append(fields, top)
		}
	}
	slices.Sort(fields)
	return fields
}

// TestARefreshWithAReaderTalosconfigShowsReleaseDriftAndLeavesTheConfigUncompared: with
// TALOSNODE_READ_TALOSCONFIG an os:reader certificate reads the node; the release and the
// Kubernetes version (KubeletConfig) drift show, the config is not compared (Talos refuses a
// reader the MachineConfig) and keeps its recorded value, and the refresh does not fail. The
// stack's own (os:admin) credential, without the variable, shows the config drift too.
func TestARefreshWithAReaderTalosconfigShowsReleaseDriftAndLeavesTheConfigUncompared(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	sim := l.Configured(t, "127.0.10.81", config)
	lc := create(t, l, "127.0.10.81", config, "20s")
	recordedHash := lc.state.Get("configHash").AsString()
	if err := sim.Set(context.Background(), simnode.Change{
		TalosVersion: "v1.11.4",
		ConfigPatch:  "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n  sysctls:\n    vm.max_map_count: \"262144\"\n",
	}); err != nil {
		t.Fatal(err)
	}

	useTalosconfig(t, l, role.Reader)
	read, err := lc.refresh(t)
	if err != nil {
		t.Fatalf("refresh with os:reader: %v", err)
	}
	for key, want := range map[string]string{
		"talosVersion": "v1.11.4", "runningTalosVersion": "v1.11.4",
		"kubernetesVersion": "1.34.2", "appliedKubernetesVersion": "1.34.2",
		"configHash": recordedHash, "appliedConfigHash": recordedHash, "installerImage": simtest.Installer,
	} {
		if got := read.Properties.Get(key); !got.IsString() || got.AsString() != want {
			t.Errorf("refreshed %s = %v, want %q", key, got, want)
		}
	}
	if got, want := diffFields(lc.diff(t)), []string{"kubernetesVersion", "talosVersion"}; !slices.Equal(got, want) {
		t.Errorf("diff with os:reader: %v, want %v (the config is not compared)", got, want)
	}

	t.Setenv(provider.ReadTalosconfigEnv, "")
	if _, err := lc.refresh(t); err != nil {
		t.Fatalf("refresh with the stack's credentials: %v", err)
	}
	if got, want := diffFields(lc.diff(t)), []string{"config", "configHash", "kubernetesVersion", "talosVersion"}; !slices.Equal(got, want) {
		t.Errorf("diff with os:admin: %v, want %v", got, want)
	}
}

// TestTheRolloutsRefreshWithAReaderTalosconfigJudgesTheReleaseOnly: the Rollout's refresh under
// an os:reader credential records a worker's changed release and leaves a control plane's
// edited config uncompared (no error, no made-up drift); under os:admin it records both.
func TestTheRolloutsRefreshWithAReaderTalosconfigJudgesTheReleaseOnly(t *testing.T) {
	rl := newRolloutLab(t, "127.0.10.82", "127.0.10.83")
	lc := createRollout(t, rl.inputs(t, "auto"))
	if err := rl.w.Set(context.Background(), simnode.Change{TalosVersion: "v1.11.4"}); err != nil {
		t.Fatal(err)
	}
	if err := rl.cp.Set(context.Background(), simnode.Change{ConfigPatch: "machine:\n  sysctls:\n    vm.max_map_count: \"262144\"\n"}); err != nil {
		t.Fatal(err)
	}
	useTalosconfig(t, rl.lab, role.Reader)
	if changed, keys := lc.refreshDiff(t); !changed || !slices.Equal(keys, []string{"nodes[1].talosVersion"}) {
		t.Errorf("diff with os:reader: changes %t, %v; want [nodes[1].talosVersion]", changed, keys)
	}
	// The preview's pre-flight reads with the same credential and passes.
	if _, err := lc.s.Update(p.UpdateRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), State: lc.state, Inputs: lc.program, DryRun: true}); err != nil {
		t.Errorf("preview with os:reader: %v", err)
	}

	t.Setenv(provider.ReadTalosconfigEnv, "")
	if changed, keys := lc.refreshDiff(t); !changed || !slices.Equal(keys, []string{"nodes[0].machineConfiguration", "nodes[1].talosVersion"}) {
		t.Errorf("diff with os:admin: changes %t, %v; want the config and the release", changed, keys)
	}
}

// TestARefreshTalosconfigThatCannotBeUsedFailsTheRefreshNamingTheVariable: a path that is not a
// talosconfig is an error naming the variable and the fix, not a silent fall-back to os:admin.
func TestARefreshTalosconfigThatCannotBeUsedFailsTheRefreshNamingTheVariable(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	l.Configured(t, "127.0.10.84", config)
	lc := create(t, l, "127.0.10.84", config, "20s")
	missing := filepath.Join(t.TempDir(), "absent.talosconfig")
	t.Setenv(provider.ReadTalosconfigEnv, missing)
	_, err := lc.refresh(t)
	if err == nil || !strings.Contains(err.Error(), "refresh cp-1 (127.0.10.84): TALOSNODE_READ_TALOSCONFIG="+missing) ||
		!strings.Contains(err.Error(), "talosctl config new <path> --roles os:reader") {
		t.Fatalf("got %v", err)
	}
}
