package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// A Kubernetes change in the preview's plan: the path and the order `talosctl upgrade-k8s` takes
// (siderolabs/talos pkg/cluster/kubernetes: images pre-pulled, then each control-plane component
// on every control plane in turn, kube-proxy, the kubelets, then the bootstrap manifests), and
// whether each node's running Talos supports the target (rollout.CheckKubernetes).

// runningReadTimeout bounds the read of one node's running release for the plan.
const runningReadTimeout = 10 * time.Second

// kubernetesOf is the Kubernetes version a config runs (its kubelet image tag without a leading
// v) and the config itself; "" and nil when the config does not load or has no kubelet.
func kubernetesOf(machineConfig string) (string, config.Provider) {
	if machineConfig == "" {
		return "", nil
	}
	cfg, err := configloader.NewFromBytes([]byte(machineConfig))
	if err != nil || cfg.Machine() == nil || cfg.K8sKubeletConfig() == nil {
		return "", nil
	}
	return strings.TrimPrefix(node.ImageTag(cfg.K8sKubeletConfig().Image()), "v"), cfg
}

// kubernetesChange is the Kubernetes versions of an update: from, the oldest the recorded configs
// of the nodes that stay run; to, the newest the declared configs run; "" when neither is known
// or nothing changes.
func kubernetesChange(recorded, declared []RolloutNode) (from, to string) {
	stays := map[string]bool{}
	for _, n := range declared {
		stays[n.Name] = true
	}
	var before, after []string
	for _, n := range recorded {
		if v, _ := kubernetesOf(n.MachineConfiguration); v != "" && stays[n.Name] {
			before = append(before, v)
		}
	}
	for _, n := range declared {
		if v, _ := kubernetesOf(n.MachineConfiguration); v != "" {
			after = append(after, v)
		}
	}
	from, to = oldest(before), newest(after)
	if from == "" || to == "" || (from == to && !slices.ContainsFunc(before, func(v string) bool { return v != to })) {
		return "", ""
	}
	return from, to
}

// kubernetesPlan is the plan's lines for a Kubernetes change, "" lines when the version does not
// change: the path (with go-kubernetes' refusal when it refuses it), the order of the components,
// and each existing node's running Talos against the target. running maps a node's name to the
// Talos release it was read running; a node missing there is judged by its recorded release.
func kubernetesPlan(recorded, declared []RolloutNode, maxUnavailableWorkers int, running map[string]string) []string {
	from, to := kubernetesChange(recorded, declared)
	if to == "" {
		return nil
	}
	existing := map[string]RolloutNode{}
	for _, n := range recorded {
		existing[n.Name] = n
	}
	ordered := make([]rollout.Node, len(declared))
	byName := map[string]RolloutNode{}
	for i, n := range declared {
		_, was := existing[n.Name]
		ordered[i] = rollout.Node{Target: node.Target{Name: n.Name}, ControlPlane: n.Role == "controlplane", New: !was, Config: []byte(n.MachineConfiguration)}
		byName[n.Name] = n
	}
	cps, workers := rollout.Split(ordered)
	names := func(list []rollout.Node) string {
		out := make([]string, len(list))
		for i, n := range list {
			out[i] = n.Target.Name
		}
		return strings.Join(out, ", ")
	}
	proxy := "then kube-proxy"
	for _, n := range cps {
		if _, cfg := kubernetesOf(byName[n.Target.Name].MachineConfiguration); cfg != nil && cfg.K8sProxyConfig() != nil && !cfg.K8sProxyConfig().Enabled() {
			proxy = "kube-proxy is disabled (skipped)"
			break
		}
	}
	path, problem := rollout.KubernetesPath(from, to)
	head := fmt.Sprintf("Kubernetes %s", cmp.Or(path, to))
	if problem != "" {
		head += " (refused: " + problem + ")"
	}
	cpNames := names(cps)
	line := fmt.Sprintf("%s: pre-pull images on every node, then kube-apiserver on %s, then kube-controller-manager on %s, then kube-scheduler on %s, %s, "+
		"then kubelets: control planes one at a time (%s), workers %d at a time per pool (%s); then the bootstrap manifests",
		head, cpNames, cpNames, cpNames, proxy, cpNames, max(maxUnavailableWorkers, 1), workerPools(workers))
	lines := []string{line}
	for _, n := range append(cps, workers...) {
		lines = append(lines, compatibilityLine(byName[n.Target.Name], existing[n.Target.Name], to, running))
	}
	return lines
}

// workerPools lists the workers by pool (rollout.PoolLabel), "none" without workers.
func workerPools(workers []rollout.Node) string {
	if len(workers) == 0 {
		return "none"
	}
	var order []string
	pools := map[string][]string{}
	for _, w := range workers {
		pool := ""
		if _, cfg := kubernetesOf(string(w.Config)); cfg != nil && cfg.K8sNodeConfig() != nil {
			pool = cfg.K8sNodeConfig().Labels()[rollout.PoolLabel]
		}
		if _, ok := pools[pool]; !ok {
			order = append(order, pool)
		}
		pools[pool] = append(pools[pool], w.Target.Name)
	}
	parts := make([]string, len(order))
	for i, pool := range order {
		label := "pool " + pool
		if pool == "" {
			label = "unlabelled"
		}
		parts[i] = label + ": " + strings.Join(pools[pool], ", ")
	}
	return strings.Join(parts, "; ")
}

// compatibilityLine says whether the Talos a node runs supports the target Kubernetes.
func compatibilityLine(declared, recorded RolloutNode, to string, running map[string]string) string {
	release, read := running[declared.Name]
	which := "it runs"
	if !read {
		release, which = recorded.TalosVersion, "recorded for it (the node was not read)"
	}
	_, cfg := kubernetesOf(declared.MachineConfiguration)
	prefix := fmt.Sprintf("%s: Kubernetes %s on the Talos %s %s: ", declared.Name, to, release, which)
	if cfg == nil {
		return prefix + "not judged (the declared config is not known until the update)"
	}
	err := rollout.CheckKubernetes(cfg, release)
	switch {
	case err == nil:
		return prefix + "supported (" + rollout.SupportedKubernetes(release) + ")"
	case rollout.SupportedKubernetes(release) == "":
		return prefix + "not judged (" + err.Error() + "); the node decides"
	case release != declared.TalosVersion:
		return prefix + "not supported (" + err.Error() + "); its Talos " + declared.TalosVersion + " comes first"
	default:
		return prefix + "not supported (" + err.Error() + ")"
	}
}

// runningReleases reads the Talos release each existing node runs, for the plan; a node that does
// not answer is left out (its line says so).
func runningReleases(ctx context.Context, recorded []RolloutNode, creds node.Credentials) map[string]string {
	out := map[string]string{}
	for _, n := range recorded {
		callCtx, cancel := context.WithTimeout(ctx, runningReadTimeout)
		live, err := node.ReadAvailable(callCtx, node.Target{Name: n.Name, Address: n.Address}, creds)
		cancel()
		var expired *node.CertificateExpiredError
		if errors.As(err, &expired) {
			return out
		}
		if err == nil && live.TalosVersion != "" {
			out[n.Name] = live.TalosVersion
		}
	}
	return out
}

func oldest(versions []string) string { return pick(versions, -1) }
func newest(versions []string) string { return pick(versions, 1) }

// pick is the oldest (sign -1) or newest (sign 1) of versions, compared as semver by
// rollout.CompareKubernetes; "" when there are none.
func pick(versions []string, sign int) string {
	best := ""
	for _, v := range versions {
		if best == "" || rollout.CompareKubernetes(v, best)*sign > 0 {
			best = v
		}
	}
	return best
}
