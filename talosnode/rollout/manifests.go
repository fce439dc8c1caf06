package rollout

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/siderolabs/go-kubernetes/kubernetes/manifests"
	"github.com/siderolabs/go-kubernetes/kubernetes/ssa"
	"github.com/siderolabs/go-kubernetes/kubernetes/ssa/object"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"talos-cluster/talosnode/node"
)

// The bootstrap-manifest sync of `talosctl upgrade-k8s` (Talos v1.14.1 pkg/cluster/kubernetes/
// talos_managed.go PerformManifestsSync). Talos only creates the bootstrap manifests (CoreDNS,
// RBAC, kube-proxy) that are missing (manifest_apply.go), so a new CoreDNS image or a new Talos
// release's RBAC reaches a running cluster only through this sync. It reads the rendered
// k8s.Manifest resources of one control plane (go-kubernetes manifests.GetBootstrapManifests) and
// applies them through go-kubernetes: server-side apply against Talos' inventory when every node
// runs Talos 1.13+ (compatibility SupportsSSAManifestSync), the legacy diff-and-update before.
// Unlike talosctl's default it never prunes: an object the manifests no longer hold stays.

// manifestWaitInterval is how often the sync re-reads a rollout it waits for (talosctl: 2s).
const manifestWaitInterval = time.Second

// manifestWaitTimeout bounds the wait for the rollouts (talosctl's --manifests-reconcile-timeout).
const manifestWaitTimeout = 5 * time.Minute

// SyncManifests applies the bootstrap manifests of controlPlane to its cluster through its own
// API server (https://<address>:6443) with kubeconfig's credentials, as talosctl upgrade-k8s
// does for a cluster whose oldest node runs minTalos, except that nothing is deleted; then it
// waits until what it changed has rolled out (Deployments, DaemonSets: kstatus Current). log
// gets one line per object created or updated: "updated apps/v1 Deployment kube-system/coredns".
func SyncManifests(ctx context.Context, controlPlane node.Target, creds node.Credentials, kubeconfig []byte, minTalos string, log func(string)) error {
	return syncManifests(ctx, controlPlane, creds, kubeconfig, minTalos, false, log)
}

// DiffManifests is what SyncManifests would change, one short line per object:
// "update apps/v1 Deployment kube-system/coredns" (no values: they are not for a preview).
func DiffManifests(ctx context.Context, controlPlane node.Target, creds node.Credentials, kubeconfig []byte, minTalos string) ([]string, error) {
	var out []string
	err := syncManifests(ctx, controlPlane, creds, kubeconfig, minTalos, true, func(line string) { out = append(out, line) })
	return out, err
}

func syncManifests(ctx context.Context, controlPlane node.Target, creds node.Credentials, kubeconfig []byte, minTalos string, dryRun bool, log func(string)) error {
	if log == nil {
		log = func(string) {}
	}
	talos, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: minTalos})
	if err != nil {
		return fmt.Errorf("Talos release %q: %w", minTalos, err)
	}
	objects, err := readManifests(ctx, controlPlane, creds)
	if err != nil {
		return err
	}
	config, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	// The control plane's own API server, as the rest of the rollout asks (runner.apiServers):
	// the cluster endpoint may be a name or VIP this machine does not reach.
	config.Host = ownAPIServer(controlPlane)
	if !talos.SupportsSSAManifestSync() {
		return legacySync(ctx, objects, config, dryRun, log)
	}
	manager, err := ssa.NewManager(ctx, config, constants.KubernetesFieldManagerName, constants.KubernetesInventoryNamespace, constants.KubernetesBootstrapManifestsInventoryName)
	if err != nil {
		return fmt.Errorf("server-side apply: %w", err)
	}
	defer manager.Close()
	// talosctl's default policy: adopt objects no inventory owns (those older Talos created).
	if dryRun {
		results, err := manager.Diff(ctx, objects, ssa.DiffOptions{NoPrune: true, InventoryPolicy: ssa.InventoryPolicyAdoptIfNoInventory})
		if err != nil {
			return fmt.Errorf("diffing the bootstrap manifests: %w", err)
		}
		for _, r := range results {
			if verb := diffVerb(r.Action); verb != "" {
				log(changeLine(verb, groupVersion(r.ObjMetadata.GroupKind.Group, r.GroupVersion), r.ObjMetadata.GroupKind.Kind, r.ObjMetadata.Namespace, r.ObjMetadata.Name))
			}
		}
		return nil
	}
	changes, err := manager.Apply(ctx, objects, ssa.ApplyOptions{
		InventoryPolicy: ssa.InventoryPolicyAdoptIfNoInventory,
		NoPrune:         true,
		WaitTimeout:     manifestWaitTimeout,
		// As talosctl: ConfigMaps and Secrets before the workloads that mount them.
		CustomStageKinds: map[schema.GroupKind]struct{}{schema.ParseGroupKind("ConfigMap"): {}, schema.ParseGroupKind("Secret"): {}},
	})
	var changed []ssa.Change
	for _, c := range changes {
		if verb := applyVerb(c.Action); verb != "" {
			log(changeLine(verb, groupVersion(c.ObjMetadata.GroupKind.Group, c.GroupVersion), c.ObjMetadata.GroupKind.Kind, c.ObjMetadata.Namespace, c.ObjMetadata.Name))
			changed = append(changed, c)
		}
	}
	if err != nil {
		return fmt.Errorf("applying the bootstrap manifests: %w", err)
	}
	if len(changed) == 0 {
		return nil
	}
	// Wait as ssacli.Wait does, for what was created or updated (its own lines are not ours).
	set := make(object.ObjMetadataSet, 0, len(changed))
	for _, c := range changed {
		set = append(set, c.ObjMetadata)
	}
	if err := manager.Wait(ctx, set, ssa.WaitOptions{Interval: manifestWaitInterval, Timeout: manifestWaitTimeout, FailFast: true}); err != nil {
		return fmt.Errorf("waiting for the changed manifests to roll out: %w", err)
	}
	return nil
}

// ownAPIServer is https://<the node's address>:6443, where Talos runs kube-apiserver.
func ownAPIServer(t node.Target) string {
	host := t.Address
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return "https://" + net.JoinHostPort(host, "6443")
}

// readManifests are the objects of the node's k8s.Manifest resources (namespace controlplane).
func readManifests(ctx context.Context, t node.Target, creds node.Credentials) ([]manifests.Manifest, error) {
	c, err := node.Dial(ctx, t, creds)
	if err != nil {
		return nil, err
	}
	defer c.Close() //nolint:errcheck
	objects, err := manifests.GetBootstrapManifests(ctx, c.COSI, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the bootstrap manifests of %s: %s", t.Name, node.Describe(err))
	}
	if len(objects) == 0 {
		return nil, fmt.Errorf("%s holds no bootstrap manifests (not a bootstrapped control plane?)", t.Name)
	}
	return objects, nil
}

func diffVerb(a ssa.DiffAction) string {
	switch a {
	case ssa.DiffCreatedAction:
		return "create"
	case ssa.DiffConfiguredAction:
		return "update"
	case ssa.DiffPrunedAction:
		return "delete" // never with NoPrune; shown should go-kubernetes ever report one
	}
	return ""
}

func applyVerb(a ssa.Action) string {
	switch a {
	case ssa.CreatedAction:
		return "created"
	case ssa.ConfiguredAction:
		return "updated"
	case ssa.DeletedAction:
		return "deleted"
	}
	return ""
}

// groupVersion is group/version: go-kubernetes' change may name the version alone ("v1" for an
// apps/v1 Deployment), while its object metadata always has the group.
func groupVersion(group, gv string) string {
	parsed, err := schema.ParseGroupVersion(gv)
	if err != nil {
		return gv
	}
	return schema.GroupVersion{Group: group, Version: parsed.Version}.String()
}

// changeLine is "update apps/v1 Deployment kube-system/coredns" (no namespace: cluster-wide).
func changeLine(verb, groupVersion, kind, namespace, name string) string {
	if namespace != "" {
		name = namespace + "/" + name
	}
	return strings.Join([]string{verb, groupVersion, kind, name}, " ")
}

// legacySync is talosctl's sync for a cluster with Talos older than 1.13 (manifests.Sync: create
// what is missing, update what differs, never delete), then the rollout wait of what changed.
func legacySync(ctx context.Context, objects []manifests.Manifest, config *rest.Config, dryRun bool, log func(string)) error {
	results := make(chan manifests.SyncResult)
	errCh := make(chan error, 1)
	go func() {
		errCh <- manifests.Sync(ctx, objects, config, dryRun, results)
		close(results)
	}()
	var changed []manifests.Manifest
	for r := range results {
		if r.Skipped {
			continue
		}
		// The legacy sync does not say whether it created or updated.
		verb := "synced"
		if dryRun {
			verb = "update"
		}
		gvk := r.Object.GroupVersionKind()
		log(changeLine(verb, gvk.GroupVersion().String(), gvk.Kind, r.Object.GetNamespace(), r.Object.GetName()))
		changed = append(changed, r.Object)
	}
	if err := <-errCh; err != nil {
		return fmt.Errorf("syncing the bootstrap manifests: %w", err)
	}
	if dryRun || len(changed) == 0 {
		return nil
	}
	progress := make(chan manifests.RolloutProgress)
	errCh = make(chan error, 1)
	go func() {
		errCh <- manifests.WaitForRollout(ctx, config, changed, progress)
		close(progress)
	}()
	for range progress { //nolint:revive // the progress lines are talosctl's, not ours
	}
	return <-errCh
}

// syncManifests is the run's last step with Kubernetes on, as upgrade-k8s' is: the bootstrap
// manifests of the first control plane that answers, when they differ from the cluster's.
func (r *runner) syncManifests(ctx context.Context, nodes []Node) error {
	if len(r.members) == 0 {
		return nil
	}
	minTalos := ""
	for _, n := range nodes {
		if minTalos == "" || Older(n.TalosVersion, minTalos) {
			minTalos = n.TalosVersion
		}
	}
	cp := r.members[0].Target
	fail := func(err error) error {
		return &Error{Node: cp, Phase: ManifestSync, Expected: "the bootstrap manifests applied", Seen: node.Describe(err)}
	}
	c, err := node.Dial(ctx, cp, r.opts.Creds())
	if err != nil {
		return fail(err)
	}
	kubeconfig, err := c.Kubeconfig(ctx)
	c.Close() //nolint:errcheck
	if err != nil {
		return fail(err)
	}
	diff, err := DiffManifests(ctx, cp, r.opts.Creds(), kubeconfig, minTalos)
	if err != nil {
		return fail(err)
	}
	if len(diff) == 0 {
		return nil
	}
	r.log("manifest sync: %d bootstrap objects differ", len(diff))
	if err := SyncManifests(ctx, cp, r.opts.Creds(), kubeconfig, minTalos, func(line string) { r.log("manifest sync: %s", line) }); err != nil {
		return fail(err)
	}
	return nil
}
