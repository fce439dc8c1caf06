package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/stdpatches"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/redact"
)

// A change of the cluster's Kubernetes images is made the way `talosctl upgrade-k8s` makes it
// (Talos v1.14.1 pkg/cluster/kubernetes/talos_managed.go Upgrade), not node by node: a node's
// whole config at once would start cp-1's new kubelet against the old API servers of cp-2 and
// cp-3, which Kubernetes' version-skew policy forbids. The order, component-major:
//
//  1. pre-pull the new images (prePullImages: the control-plane images into the CRI namespace
//     on each control plane, the kubelet into the system namespace on every node; a node that
//     answers Unimplemented is skipped);
//  2. kube-apiserver on each control plane, one at a time, then kube-controller-manager, then
//     kube-scheduler (upgradeStaticPod, upgradeStaticPodOnNode, checkPodStatus): only that
//     component's image is patched into the node's active config (patch.go patchNodeConfig,
//     with machinery's stdpatches for either config contract), applied NO_REBOOT, and awaited:
//     the component's config resource moves to a new version and the node's mirror pod carries
//     it (talos.dev/config-version) and is Ready;
//  3. kube-proxy's image on each control plane, not awaited (upgradeKubeProxy), unless the
//     declared config disables the proxy;
//  4. kubelets, control planes one at a time, then workers through the pools'
//     maxUnavailableWorkers (kubelet.go upgradeKubelet, upgradeKubeletOnNode): the kubelet
//     service back healthy, the Node reporting the new kubeletVersion and Ready.
//
// Each step is skipped where the node's active config already has the declared image, so a
// rerun resumes where a failure stopped. The final pass then applies whatever else the declared
// configs change. Talos' own code is not linked: it reaches every node through apid forwarding
// with one client and runs the kubelets strictly one at a time, outside this rollout's gates.

// The phases of the Kubernetes upgrade: each step names the component it changes.
const (
	K8sPrePull           Phase = "pre-pull"
	K8sAPIServer         Phase = "kube-apiserver"
	K8sControllerManager Phase = "kube-controller-manager"
	K8sScheduler         Phase = "kube-scheduler"
	K8sProxy             Phase = "kube-proxy"
	K8sKubelet           Phase = "kubelet"
)

// controlPlaneComponents are the static pods in the order upgrade-k8s updates them.
var controlPlaneComponents = []Phase{K8sAPIServer, K8sControllerManager, K8sScheduler}

// k8sImages are the Kubernetes images of a config the upgrade moves, by component: the kubelet,
// and on a control plane its three static pods and kube-proxy (which Talos renders from the
// control planes' config, so upgrade-k8s patches it there only).
func k8sImages(cfg config.Provider) map[Phase]string {
	out := map[Phase]string{}
	if cfg == nil || cfg.Machine() == nil {
		return out
	}
	if k := cfg.K8sKubeletConfig(); k != nil {
		out[K8sKubelet] = k.Image()
	}
	if !cfg.Machine().Type().IsControlPlane() || cfg.Cluster() == nil {
		return out
	}
	out[K8sAPIServer] = cfg.K8sAPIServerConfig().Image()
	out[K8sControllerManager] = cfg.K8sControllerManagerConfig().Image()
	out[K8sScheduler] = cfg.K8sSchedulerConfig().Image()
	if p := cfg.K8sProxyConfig(); p != nil {
		out[K8sProxy] = p.Image()
	}
	return out
}

// proxyEnabled says whether the declared config runs kube-proxy (cluster.proxy.disabled).
func proxyEnabled(cfg config.Provider) bool {
	p := cfg.K8sProxyConfig()
	return p != nil && p.Enabled()
}

// k8sPatch is the patch that sets one component's image, for the config's contract (v1alpha1
// sections, or the 1.14 Kube*Config documents), as upgrade-k8s builds it.
func k8sPatch(cfg config.Provider, component Phase, image string) (configpatcher.Patch, error) {
	switch component {
	case K8sAPIServer:
		return stdpatches.PreparePatch(stdpatches.WithKubeAPIServerImage(stdpatches.GuessVersionContractKubeAPIServer(cfg), image))
	case K8sControllerManager:
		return stdpatches.PreparePatch(stdpatches.WithKubeControllerManagerImage(stdpatches.GuessVersionContractKubeControllerManager(cfg), image))
	case K8sScheduler:
		return stdpatches.PreparePatch(stdpatches.WithKubeSchedulerImage(stdpatches.GuessVersionContractKubeScheduler(cfg), image))
	case K8sProxy:
		return stdpatches.PreparePatch(stdpatches.WithKubeProxyImage(stdpatches.GuessVersionContractKubeProxy(cfg), image))
	case K8sKubelet:
		return stdpatches.PreparePatch(stdpatches.WithKubeletImage(stdpatches.GuessVersionContractKubelet(cfg), image))
	}
	return nil, fmt.Errorf("no image patch for %s", component)
}

// withImage is the live config with one component's image replaced, encoded for ApplyConfiguration.
func withImage(live config.Provider, component Phase, image string) ([]byte, error) {
	patch, err := k8sPatch(live, component, image)
	if err != nil {
		return nil, err
	}
	patched, err := configpatcher.Apply(configpatcher.WithConfig(live), []configpatcher.Patch{patch})
	if err != nil {
		return nil, err
	}
	cfg, err := patched.Config()
	if err != nil {
		return nil, err
	}
	return cfg.EncodeBytes()
}

// version is an image's tag without its leading v, for the log (1.37.0).
func version(image string) string {
	if tag := strings.TrimPrefix(node.ImageTag(image), "v"); tag != "" {
		return tag
	}
	return image
}

// k8sNode is one node in the Kubernetes upgrade: its declaration and the images it declares.
type k8sNode struct {
	Node
	declared config.Provider
	images   map[Phase]string
}

// kubernetesUpgrade moves every node's Kubernetes images to the declared ones in upgrade-k8s'
// order, before the final pass; it does nothing when every node runs the declared images. When a
// node's running Talos does not support the declared Kubernetes, the whole cluster first moves to
// the declared release, keeping its config (the upgrade-path mechanism, stepTo).
func (r *runner) kubernetesUpgrade(ctx context.Context, controlPlanes, workers []Node) error {
	var cps, wks []k8sNode
	var differ, unsupported []string
	for _, n := range slices.Concat(controlPlanes, workers) {
		declared, err := configloader.NewFromBytes(n.Config)
		if err != nil {
			return &Error{Node: n.Target, Phase: PreCheck, Expected: "a machine config that loads", Seen: redact.ErrorText(err)}
		}
		live, err := r.waitHealthy(ctx, n, PreCheck)
		if err != nil {
			return err
		}
		kn := k8sNode{Node: n, declared: declared, images: k8sImages(declared)}
		if n.ControlPlane {
			cps = append(cps, kn)
		} else {
			wks = append(wks, kn)
		}
		if len(imageChanges(live.Config, kn)) == 0 {
			continue
		}
		differ = append(differ, n.Target.Name)
		if err := CheckKubernetes(declared, live.TalosVersion); err != nil && !errors.Is(err, errUnknownRelease) {
			unsupported = append(unsupported, fmt.Sprintf("%s runs %s (%s)", n.Target.Name, live.TalosVersion, redact.ErrorText(err)))
		}
	}
	if len(differ) == 0 {
		return nil
	}
	if len(unsupported) > 0 {
		r.log("kubernetes upgrade: %s; every node upgrades to its declared release first, keeping its config", strings.Join(unsupported, "; "))
		if err := r.pass(ctx, releaseOnly(controlPlanes), releaseOnly(workers)); err != nil {
			return err
		}
	}
	r.log("kubernetes upgrade: %s run other Kubernetes images than declared; in upgrade-k8s' order: pre-pull, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelets (control planes, then workers)", strings.Join(differ, ", "))
	if !r.opts.Kubernetes {
		r.log("kubernetes upgrade: without the cluster's Kubernetes API each step is awaited on Talos' own view only (config resource versions, StaticPodStatus, the kubelet service, MachineStatus), which lags the pods")
	}
	if len(cps) > 0 {
		if err := r.k8sSnapshot(ctx, cps[0].Node); err != nil {
			return err
		}
	}
	if err := r.prePull(ctx, cps, wks); err != nil {
		return err
	}
	for _, component := range controlPlaneComponents {
		for _, n := range cps {
			if err := r.upgradeStaticPod(ctx, n, component); err != nil {
				return err
			}
		}
	}
	for _, n := range cps {
		if err := r.upgradeProxy(ctx, n); err != nil {
			return err
		}
	}
	if err := r.apiServersUpgraded(ctx, cps); err != nil {
		return err
	}
	for _, n := range cps {
		if err := r.upgradeKubelet(ctx, n); err != nil {
			return err
		}
	}
	byNode := map[string]k8sNode{}
	var plain []Node
	for _, n := range wks {
		byNode[n.Target.Name] = n
		plain = append(plain, n.Node)
	}
	return r.workersWith(ctx, plain, max(r.opts.MaxUnavailableWorkers, 1), func(ctx context.Context, n Node) error {
		return r.upgradeKubelet(ctx, byNode[n.Target.Name])
	})
}

// imageChanges are the components whose image in the live config is not the declared one.
func imageChanges(live config.Provider, n k8sNode) []Phase {
	have := k8sImages(live)
	var out []Phase
	for _, c := range append(slices.Clone(controlPlaneComponents), K8sProxy, K8sKubelet) {
		if want, ok := n.images[c]; ok && have[c] != want {
			out = append(out, c)
		}
	}
	return out
}

// releaseOnly is the nodes' turns of a pass that moves only the release to the declared one.
func releaseOnly(nodes []Node) []Node {
	out := slices.Clone(nodes)
	for i := range out {
		out[i].step = true
	}
	return out
}

// k8sSnapshot takes an etcd snapshot before the first change to a control plane, as every
// control plane's turn does.
func (r *runner) k8sSnapshot(ctx context.Context, n Node) error {
	if err := r.waitEtcd(ctx, n, PreCheck); err != nil {
		return err
	}
	path, err := r.opts.Snapshots.Take(ctx, n.Target, r.opts.Creds(), time.Now())
	if err != nil {
		return &Error{Node: n.Target, Phase: Snapshot, Expected: "a verified etcd snapshot on this machine", Seen: err.Error()}
	}
	r.log("%s: etcd snapshot %s before the Kubernetes upgrade", n.Target, path)
	r.record("", path)
	return nil
}

// liveConfig is the node's active config, read when the node is running and ready.
func (r *runner) liveConfig(ctx context.Context, n Node, phase Phase) (config.Provider, error) {
	live, err := r.waitHealthy(ctx, n, phase)
	if err != nil {
		return nil, err
	}
	if live.Config == nil {
		return nil, &Error{Node: n.Target, Phase: phase, Expected: "the node's active config", Seen: "none"}
	}
	return live.Config, nil
}

// prePull asks each node to pull the images it is about to run (talos_managed.go prePullImages):
// a control plane its new static pods' images into the CRI namespace, every node its new kubelet
// image into the system namespace. A node that does not implement ImagePull is skipped, as
// upgrade-k8s does.
func (r *runner) prePull(ctx context.Context, cps, wks []k8sNode) error {
	for _, n := range slices.Concat(cps, wks) {
		live, err := r.liveConfig(ctx, n.Node, K8sPrePull)
		if err != nil {
			return err
		}
		type pull struct {
			ns    common.ContainerdNamespace
			image string
		}
		var pulls []pull
		for _, c := range imageChanges(live, n) {
			switch c {
			case K8sAPIServer, K8sControllerManager, K8sScheduler:
				pulls = append(pulls, pull{common.ContainerdNamespace_NS_CRI, n.images[c]})
			case K8sKubelet:
				pulls = append(pulls, pull{common.ContainerdNamespace_NS_SYSTEM, n.images[c]})
			}
		}
		if len(pulls) == 0 {
			continue
		}
		c, err := node.Dial(ctx, n.Target, r.opts.Creds())
		if err != nil {
			return &Error{Node: n.Target, Phase: K8sPrePull, Expected: "a client for the node", Seen: err.Error()}
		}
		for _, p := range pulls {
			r.log("%s: pre-pulling %s (%s namespace)", n.Target, p.image, strings.TrimPrefix(p.ns.String(), "NS_"))
			callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
			//nolint:staticcheck // the call upgrade-k8s makes; Talos serves it on every release we run
			err := c.ImagePull(callCtx, p.ns, p.image)
			cancel()
			if status.Code(err) == codes.Unimplemented {
				r.log("%s: ImagePull is not implemented: skipping its pre-pull", n.Target)
				break
			}
			if err != nil {
				c.Close() //nolint:errcheck
				return &Error{Node: n.Target, Phase: K8sPrePull, Expected: "image " + p.image + " pulled", Seen: node.Describe(err)}
			}
		}
		c.Close() //nolint:errcheck
	}
	return nil
}

// applyImage patches one component's image into the node's active config and applies it without
// a reboot (patch.go patchNodeConfig). from is the image it had.
func (r *runner) applyImage(ctx context.Context, n k8sNode, component Phase) (from string, skipped bool, err error) {
	live, err := r.liveConfig(ctx, n.Node, component)
	if err != nil {
		return "", false, err
	}
	want := n.images[component]
	from = k8sImages(live)[component]
	if from == want {
		return from, true, nil
	}
	data, err := withImage(live, component, want)
	if err != nil {
		return from, false, &Error{Node: n.Target, Phase: component, Expected: "the active config with " + want, Seen: redact.ErrorText(err)}
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return from, false, &Error{Node: n.Target, Phase: component, Expected: "a client for the node", Seen: err.Error()}
	}
	defer c.Close() //nolint:errcheck
	callCtx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	if _, err := c.ApplyConfiguration(callCtx, &machine.ApplyConfigurationRequest{Data: data, Mode: machine.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
		return from, false, &Error{Node: n.Target, Phase: component, Expected: fmt.Sprintf("Talos to accept its config with %s %s in mode NO_REBOOT", component, version(want)), Seen: node.Describe(err)}
	}
	return from, false, nil
}

// upgradeStaticPod moves one control plane's component to the declared image and waits until it
// runs it (talos_managed.go upgradeStaticPodOnNode, checkPodStatus).
func (r *runner) upgradeStaticPod(ctx context.Context, n k8sNode, component Phase) error {
	before, err := r.configVersions(ctx, n.Node)
	if err != nil {
		return &Error{Node: n.Target, Phase: component, Expected: "the node's component config versions", Seen: node.Describe(err)}
	}
	want := n.images[component]
	from, skipped, err := r.applyImage(ctx, n, component)
	if err != nil {
		return err
	}
	c := string(component)
	if skipped {
		// Already in the config (a rerun): awaited still, as upgrade-k8s checks the pod of a
		// skipped update, so a run that stopped here does not go on past a pod that is not Ready.
		before = nil
	} else {
		r.log("%s: %s %s -> %s: applied in place; awaiting a config version past %s, the mirror pod at it and Ready", n.Target, c, version(from), version(want), before[c])
	}
	name, err := r.kubeNodeName(ctx, n.Node)
	if err != nil {
		return &Error{Node: n.Target, Phase: component, Expected: "the node's Node name", Seen: node.Describe(err)}
	}
	expected := fmt.Sprintf("%s %s running within %s: ", c, version(want), r.opts.HealthTimeout)
	if before != nil {
		expected += fmt.Sprintf("its config resource past version %s, ", before[c])
	}
	var check func(ctx context.Context, now string) string
	if r.opts.Kubernetes {
		expected += "the mirror pod at that version and Ready"
		k, err := r.kube(ctx)
		if err != nil {
			return &Error{Node: n.Target, Phase: component, Expected: "an admin kubeconfig to watch the change land", Seen: err.Error()}
		}
		check = func(ctx context.Context, now string) string {
			pod, err := k.MirrorPod(ctx, r.apiServers(), c, name)
			switch {
			case err != nil:
				return err.Error()
			case pod.ConfigVersion != now:
				return fmt.Sprintf("%s at config version %q, Talos' is %s", pod.Name, pod.ConfigVersion, now)
			case !pod.Ready:
				return fmt.Sprintf("%s at config version %s, not Ready", pod.Name, now)
			}
			return ""
		}
	} else {
		expected += "Talos' StaticPodStatus Ready and the node ready"
		check = func(ctx context.Context, _ string) string { return r.staticPodStatus(ctx, n.Node, c, name) }
	}
	var landed string
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for %s %s to run", n.Target.Where(), component, c, version(want)), func(ctx context.Context) (bool, string, error) {
		now, err := r.configVersions(ctx, n.Node)
		if err != nil {
			return false, node.Describe(err), nil
		}
		if before != nil && now[c] == before[c] {
			return false, fmt.Sprintf("Talos' %s config still at version %s", c, now[c]), nil
		}
		if p := check(ctx, now[c]); p != "" {
			return false, p, nil
		}
		landed = now[c]
		return true, "", nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: component, Expected: expected, Seen: seen}
	}
	if skipped {
		return nil
	}
	r.log("%s: %s %s runs (config version %s)", n.Target, c, version(want), landed)
	r.record(fmt.Sprintf("%s: %s %s -> %s", n.Target.Name, c, version(from), version(want)), "")
	return nil
}

// staticPodStatus is "" when Talos' StaticPodStatus says the component's pod is Ready and the
// node is ready (MachineStatus), else what it says. Talos refreshes both only every 15 s.
func (r *runner) staticPodStatus(ctx context.Context, n Node, component, nodeName string) string {
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return err.Error()
	}
	defer c.Close() //nolint:errcheck
	id := "kube-system/" + component + "-" + nodeName
	res, err := safe.StateGet[*k8s.StaticPodStatus](ctx, c.COSI, resource.NewMetadata(k8s.NamespaceName, k8s.StaticPodStatusType, id, resource.VersionUndefined))
	if err != nil {
		return fmt.Sprintf("StaticPodStatus %s: %s", id, node.Describe(err))
	}
	if !podReady(res.TypedSpec().PodStatus) {
		return "StaticPodStatus " + id + " not Ready"
	}
	s, err := node.ReadWith(ctx, c, n.Target)
	if err != nil {
		return node.Describe(err)
	}
	if s.Stage != "running" || !s.Ready {
		return fmt.Sprintf("stage %s, ready %t", s.Stage, s.Ready)
	}
	return ""
}

// podReady reads a pod status (as Talos stores it from the kubelet's /pods) for condition Ready.
func podReady(podStatus map[string]any) bool {
	conditions, _ := podStatus["conditions"].([]any)
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return m["status"] == "True"
		}
	}
	return false
}

// upgradeProxy moves kube-proxy's image in a control plane's config, not awaited: Talos renders
// it into the bootstrap manifests (talos_managed.go upgradeKubeProxy).
func (r *runner) upgradeProxy(ctx context.Context, n k8sNode) error {
	want, ok := n.images[K8sProxy]
	if !ok {
		return nil
	}
	if !proxyEnabled(n.declared) {
		r.log("%s: kube-proxy is disabled in the declared config: its image is left to the final pass", n.Target)
		return nil
	}
	from, skipped, err := r.applyImage(ctx, n, K8sProxy)
	if err != nil || skipped {
		return err
	}
	r.log("%s: kube-proxy %s -> %s: applied in place (rendered into the bootstrap manifests; not awaited, as upgrade-k8s)", n.Target, version(from), version(want))
	r.record(fmt.Sprintf("%s: kube-proxy %s -> %s", n.Target.Name, version(from), version(want)), "")
	return nil
}

// apiServersUpgraded refuses to start any kubelet while a control plane's kube-apiserver is not
// the declared one: Kubernetes' skew policy allows no kubelet newer than any API server.
func (r *runner) apiServersUpgraded(ctx context.Context, cps []k8sNode) error {
	for _, n := range cps {
		live, err := r.liveConfig(ctx, n.Node, K8sKubelet)
		if err != nil {
			return err
		}
		if have, want := k8sImages(live)[K8sAPIServer], n.images[K8sAPIServer]; have != want {
			return &Error{Node: n.Target, Phase: K8sKubelet, Expected: fmt.Sprintf("kube-apiserver %s on every control plane before any kubelet moves", version(want)), Seen: "kube-apiserver " + version(have)}
		}
	}
	return nil
}

// upgradeKubelet moves a node's kubelet to the declared image and waits until it runs it
// (kubelet.go upgradeKubeletOnNode, checkNodeKubeletVersion).
func (r *runner) upgradeKubelet(ctx context.Context, n k8sNode) error {
	want := n.images[K8sKubelet]
	from, skipped, err := r.applyImage(ctx, n, K8sKubelet)
	if err != nil || skipped {
		return err
	}
	name, err := r.kubeNodeName(ctx, n.Node)
	if err != nil {
		return &Error{Node: n.Target, Phase: K8sKubelet, Expected: "the node's Node name", Seen: node.Describe(err)}
	}
	tag := node.ImageTag(want)
	expected := fmt.Sprintf("kubelet %s running within %s: the kubelet service healthy, ", version(want), r.opts.HealthTimeout)
	var check func(ctx context.Context) string
	if r.opts.Kubernetes {
		r.log("%s: kubelet %s -> %s: applied in place; awaiting the kubelet service healthy and Node %s at kubelet %s and Ready", n.Target, version(from), version(want), name, tag)
		expected += "Node " + name + " at kubelet " + tag + " and Ready"
		k, err := r.kube(ctx)
		if err != nil {
			return &Error{Node: n.Target, Phase: K8sKubelet, Expected: "an admin kubeconfig to watch the change land", Seen: err.Error()}
		}
		check = func(ctx context.Context) string {
			info, err := k.Node(ctx, r.apiServers(), name)
			switch {
			case err != nil:
				return err.Error()
			case info.KubeletVersion != tag:
				return fmt.Sprintf("Node %s reports kubelet %s", name, info.KubeletVersion)
			case !info.Ready:
				return fmt.Sprintf("Node %s not Ready", name)
			}
			return ""
		}
	} else {
		r.log("%s: kubelet %s -> %s: applied in place; awaiting Talos' kubelet config at it, the kubelet service healthy and the node ready", n.Target, version(from), version(want))
		expected += "Talos' kubelet config at " + tag + " and the node ready"
		check = func(ctx context.Context) string { return r.kubeletStatus(ctx, n.Node, want) }
	}
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for kubelet %s to run", n.Target.Where(), K8sKubelet, version(want)), func(ctx context.Context) (bool, string, error) {
		if p := r.kubeletService(ctx, n.Node); p != "" {
			return false, p, nil
		}
		p := check(ctx)
		return p == "", p, nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: K8sKubelet, Expected: expected, Seen: seen}
	}
	r.log("%s: kubelet %s runs", n.Target, version(want))
	r.record(fmt.Sprintf("%s: kubelet %s -> %s", n.Target.Name, version(from), version(want)), "")
	return nil
}

// kubeletService is "" when Talos' kubelet service is running and healthy.
func (r *runner) kubeletService(ctx context.Context, n Node) string {
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return err.Error()
	}
	defer c.Close() //nolint:errcheck
	svc, err := safe.StateGetByID[*v1alpha1.Service](ctx, c.COSI, "kubelet")
	switch {
	case err != nil:
		return "kubelet service: " + node.Describe(err)
	case !svc.TypedSpec().Running || !svc.TypedSpec().Healthy:
		return fmt.Sprintf("kubelet service running %t, healthy %t", svc.TypedSpec().Running, svc.TypedSpec().Healthy)
	}
	return ""
}

// kubeletStatus is Talos' own view of the kubelet: its KubeletConfig at the image and the node
// ready (MachineStatus), for a rollout without the cluster's API.
func (r *runner) kubeletStatus(ctx context.Context, n Node, image string) string {
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return err.Error()
	}
	defer c.Close() //nolint:errcheck
	cfg, err := safe.StateGetByID[*k8s.KubeletConfig](ctx, c.COSI, k8s.KubeletID)
	if err != nil {
		return "KubeletConfig: " + node.Describe(err)
	}
	if cfg.TypedSpec().Image != image {
		return "Talos' kubelet config at " + cfg.TypedSpec().Image
	}
	s, err := node.ReadWith(ctx, c, n.Target)
	if err != nil {
		return node.Describe(err)
	}
	if s.Stage != "running" || !s.Ready {
		return fmt.Sprintf("stage %s, ready %t", s.Stage, s.Ready)
	}
	return ""
}
