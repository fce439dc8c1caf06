package judge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/siderolabs/go-kubernetes/kubernetes/upgrade"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

// Removed Kubernetes flags, feature gates and admission plugins are judged with Sidero's own
// table: go-kubernetes' upgrade checks (kubernetes/upgrade/checks.go, the ones `talosctl
// upgrade-k8s` runs before an upgrade), not a copy of it. Those checks read a node's static pods
// and kubelet spec from its COSI state; here that state is built in memory from the config after
// each patch, so what a patch adds is blamed on it like Talos' own refusals.

// removedBy names where go-kubernetes' table comes from, after each such message.
const removedBy = "go-kubernetes upgrade checks"

// firstCheckedMinor is the oldest target minor go-kubernetes' table has entries for (1.24->1.25).
const firstCheckedMinor = 25

// componentKeys are the config keys whose extraArgs become each component's command line.
var componentKeys = map[string]string{
	k8s.APIServerID:         "cluster.apiServer.extraArgs",
	k8s.ControllerManagerID: "cluster.controllerManager.extraArgs",
	k8s.SchedulerID:         "cluster.scheduler.extraArgs",
	k8s.KubeletID:           "machine.kubelet.extraArgs",
}

// checkedNode names the one node of the in-memory state the checks read.
const checkedNode = "config"

// removedItems lists what cfg's extraArgs set that Kubernetes removed in or before the given
// release: every step "1.(k-1)->1.k" up to its minor is checked, as a flag removed in 1.34 stays
// removed in 1.37. An unparsable or empty version (a caller without one) checks nothing.
func removedItems(cfg coreconfig.Provider, kubernetesVersion string) []string {
	v, err := semver.ParseTolerant(strings.TrimPrefix(kubernetesVersion, "v"))
	if err != nil || v.Major != 1 {
		return nil
	}
	st, controlPlane := staticState(cfg)
	provider := func(context.Context, string) (state.State, error) { return st, nil }
	var cps, workers []string
	if controlPlane {
		cps = []string{checkedNode}
	} else {
		workers = []string{checkedNode}
	}
	var out []string
	for minor := uint64(firstCheckedMinor); minor <= v.Minor; minor++ {
		path, err := upgrade.NewPath(fmt.Sprintf("1.%d.0", minor-1), fmt.Sprintf("1.%d.0", minor))
		if err != nil {
			continue
		}
		checks, err := upgrade.NewChecksWithStateProvider(path, provider, nil, cps, workers, func(string, ...any) {})
		if err != nil {
			continue
		}
		err = checks.Run(context.Background())
		var removed upgrade.ComponentRemovedItemsError
		if !errors.As(err, &removed) {
			continue
		}
		describe := func(what string, items []upgrade.ComponentItem) {
			for _, item := range items {
				out = append(out, fmt.Sprintf("%s: %s %s was removed in Kubernetes 1.%d; remove it (%s)",
					componentKeys[item.Component], what, item.Value, minor, removedBy))
			}
		}
		describe("flag", flagged(removed.CLIFlags))
		describe("feature gate", removed.FeatureGates)
		describe("admission plugin", removed.AdmissionFlags)
	}
	return out
}

// flagged writes flag names as the command line has them.
func flagged(items []upgrade.ComponentItem) []upgrade.ComponentItem {
	out := make([]upgrade.ComponentItem, len(items))
	for i, item := range items {
		item.Value = "--" + item.Value
		out[i] = item
	}
	return out
}

// staticState builds the COSI resources go-kubernetes' checks read from a node: the control plane's
// static pods (k8s.StaticPod, a container whose command carries the component's extraArgs) and
// the kubelet's spec (k8s.KubeletSpec, Args from the kubelet's extraArgs). Only extraArgs go in:
// Talos' own flags are not the stack's to fix, and Talos keeps them current for each release.
func staticState(cfg coreconfig.Provider) (state.State, bool) {
	st := state.WrapCore(namespaced.NewState(inmem.Build))
	ctx := context.Background()
	controlPlane := cfg.Machine() != nil && cfg.Machine().Type() == machine.TypeControlPlane
	if controlPlane {
		components := map[string]map[string][]string{}
		if c := cfg.K8sAPIServerConfig(); c != nil {
			components[k8s.APIServerID] = c.ExtraArgs()
		}
		if c := cfg.K8sControllerManagerConfig(); c != nil {
			components[k8s.ControllerManagerID] = c.ExtraArgs()
		}
		if c := cfg.K8sSchedulerConfig(); c != nil {
			components[k8s.SchedulerID] = c.ExtraArgs()
		}
		for id, args := range components {
			pod := k8s.NewStaticPod(k8s.NamespaceName, id)
			pod.TypedSpec().Pod = map[string]any{
				"spec": map[string]any{
					"containers": []any{map[string]any{"name": id, "command": toAny(commandLine(id, args))}},
				},
			}
			_ = st.Create(ctx, pod) //nolint:errcheck // a fresh in-memory state takes every new id
		}
	}
	if c := cfg.K8sKubeletConfig(); c != nil {
		spec := k8s.NewKubeletSpec(k8s.NamespaceName, k8s.KubeletID)
		spec.TypedSpec().Args = commandLine("", c.ExtraArgs())[1:]
		_ = st.Create(ctx, spec) //nolint:errcheck
	}
	return st, controlPlane
}

// commandLine renders extraArgs as --name=value flags after the binary's name, in name order; a
// list value is one flag with its items joined by commas, so every feature gate and admission
// plugin it names is read.
func commandLine(binary string, args map[string][]string) []string {
	out := []string{"/usr/local/bin/" + binary}
	for _, name := range slices.Sorted(maps.Keys(args)) {
		out = append(out, "--"+name+"="+strings.Join(args[name], ","))
	}
	return out
}

func toAny(list []string) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}
