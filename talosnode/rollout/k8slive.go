package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/go-kubernetes/kubernetes/upgrade"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"talos-cluster/talosnode/node"
)

// The live half of `talosctl upgrade-k8s`' pre-flight: go-kubernetes' removed-item checks
// (kubernetes/upgrade/checks.go) against the running cluster, with each node's COSI state read
// through the Talos API (its static pods and kubelet spec, as the node renders them) and the
// cluster's API for the removed resources still stored.

// componentKey is the config key whose extraArgs feed a component's command line.
var componentKey = map[string]string{
	k8s.APIServerID:         "cluster.apiServer.extraArgs",
	k8s.ControllerManagerID: "cluster.controllerManager.extraArgs",
	k8s.SchedulerID:         "cluster.scheduler.extraArgs",
	k8s.KubeletID:           "machine.kubelet.extraArgs",
}

// RemovedItemProblems words go-kubernetes' finding for an upgrade to the given minor ("1.34"),
// one line per node, component and item, then one per removed API resource still in use.
func RemovedItemProblems(found upgrade.ComponentRemovedItemsError, minor string) []string {
	var out []string
	add := func(what string, items []upgrade.ComponentItem, prefix string) {
		for _, it := range items {
			out = append(out, fmt.Sprintf("%s runs %s with %s %s%s, removed in Kubernetes %s: remove it from %s first (go-kubernetes upgrade checks)",
				it.Node, it.Component, what, prefix, it.Value, minor, componentKey[it.Component]))
		}
	}
	add("admission plugin", found.AdmissionFlags, "")
	add("feature gate", found.FeatureGates, "")
	add("flag", found.CLIFlags, "--")
	for _, resource := range slices.Sorted(maps.Keys(found.APIResources)) {
		out = append(out, fmt.Sprintf("the cluster stores %d %s, removed in Kubernetes %s: migrate them to a served version first (go-kubernetes upgrade checks)",
			found.APIResources[resource], resource, minor))
	}
	return out
}

// liveRemovedItems runs go-kubernetes' checks for the step from -> to (one minor; a path the
// table has no entry for checks nothing) against the running nodes and the cluster's API.
// Nodes are named by their stack names; each is dialled once and closed afterwards.
func liveRemovedItems(ctx context.Context, nodes []Node, from, to string, opts Options, kubeconfig []byte) ([]string, error) {
	path, err := upgrade.NewPath(from, to)
	if err != nil {
		return nil, err
	}
	var cfg *rest.Config
	if len(kubeconfig) > 0 {
		if cfg, err = clientcmd.RESTConfigFromKubeConfig(kubeconfig); err != nil {
			return nil, errors.New("the admin kubeconfig does not load")
		}
	}
	targets := map[string]node.Target{}
	var cps, workers []string
	for _, n := range nodes {
		if n.New || n.Leaving {
			continue
		}
		targets[n.Target.Name] = n.Target
		if n.ControlPlane {
			cps = append(cps, n.Target.Name)
		} else {
			workers = append(workers, n.Target.Name)
		}
	}
	clients := map[string]*client.Client{}
	defer func() {
		for _, c := range clients {
			c.Close() //nolint:errcheck
		}
	}()
	provider := func(ctx context.Context, name string) (state.State, error) {
		if c, ok := clients[name]; ok {
			return c.COSI, nil
		}
		c, err := node.Dial(ctx, targets[name], opts.Creds())
		if err != nil {
			return nil, err
		}
		clients[name] = c
		return c.COSI, nil
	}
	return removedItemsWith(ctx, path, provider, cfg, cps, workers)
}

// removedItemsWith runs go-kubernetes' checks for path with the given per-node states and
// cluster API (nil: the API resources are not checked) and words what they find.
func removedItemsWith(ctx context.Context, path *upgrade.Path, provider upgrade.StateProvider, cfg *rest.Config, cps, workers []string) ([]string, error) {
	checks, err := upgrade.NewChecksWithStateProvider(path, provider, cfg, cps, workers, func(string, ...any) {})
	if err != nil {
		return nil, err
	}
	err = checks.Run(ctx)
	var found upgrade.ComponentRemovedItemsError
	if errors.As(err, &found) {
		t := strings.Split(path.ToVersion(), ".")
		return RemovedItemProblems(found, strings.Join(t[:min(2, len(t))], ".")), nil
	}
	return nil, err
}

// controlPlaneVersions are the Kubernetes versions of a control plane's static pods (their image
// tags), as Talos renders them (k8s.StaticPod); none when they cannot be read.
func controlPlaneVersions(ctx context.Context, t node.Target, creds node.Credentials) []string {
	c, err := node.Dial(ctx, t, creds)
	if err != nil {
		return nil
	}
	defer c.Close() //nolint:errcheck
	pods, err := safe.StateListAll[*k8s.StaticPod](ctx, c.COSI)
	if err != nil {
		return nil
	}
	var out []string
	for pod := range pods.All() {
		spec, _ := pod.TypedSpec().Pod["spec"].(map[string]any)
		containers, _ := spec["containers"].([]any)
		for _, c := range containers {
			container, _ := c.(map[string]any)
			if image, _ := container["image"].(string); image != "" {
				if v := strings.TrimPrefix(node.ImageTag(image), "v"); v != "" {
					out = append(out, v)
				}
			}
		}
	}
	return out
}
