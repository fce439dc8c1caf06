package node

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What `talosctl upgrade-k8s` (Talos v1.14.1 pkg/cluster/kubernetes) and go-kubernetes' upgrade
// checks (v0.2.41 kubernetes/upgrade/checks.go Checks.Run) read from a node besides the config
// resources of staticpods.go:
//
//   - StaticPod (namespace k8s, one per control-plane component): the pod Talos renders, whose
//     first container's command the checks search for removed flags, feature gates and admission
//     plugins;
//   - KubeletSpec (namespace k8s, id kubelet): the kubelet's image (prePullImages keeps its -fat
//     or -slim suffix) and command line (the checks' removed kubelet flags);
//   - the legacy MachineService.ImagePull, with which prePullImages pulls every new image;
//   - the kubelet Service resource, destroyed while the kubelet restarts and back running and
//     healthy after (kubelet.go upgradeKubeletOnNode waits for both; etcd.go servicesWith).

// imageTag is an image reference's tag ("" without one), without a digest.
func imageTag(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return ""
}

// staticPodResource is Talos' StaticPod for a control-plane component (v1.14.1
// controllers/k8s/control_plane_static_pod.go manageAPIServer and its siblings, rendered by
// k8stemplates): a kube-system Pod carrying the config version, whose container runs the image
// with the component's flags, extraArgs included (finalConfig: the flags that follow the config).
func staticPodResource(cfg config.Provider, plain resource.Resource, version resource.Version) *k8s.StaticPod {
	var image, id string
	var command []string
	switch final := finalConfig(cfg, plain).(type) {
	case *k8s.APIServerConfig:
		image, id, command = final.TypedSpec().Image, k8s.APIServerID, final.TypedSpec().Args
	case *k8s.ControllerManagerConfig:
		image, id, command = final.TypedSpec().Image, k8s.ControllerManagerID, final.TypedSpec().Args
	case *k8s.SchedulerConfig:
		image, id, command = final.TypedSpec().Image, k8s.SchedulerID, final.TypedSpec().Args
	}
	res := k8s.NewStaticPod(k8s.NamespaceName, id)
	res.TypedSpec().Pod = map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name":      id,
			"namespace": "kube-system",
			"labels": map[string]any{
				"tier": "control-plane", "k8s-app": id, "component": id, "app.kubernetes.io/name": id,
				"app.kubernetes.io/version": strings.TrimPrefix(imageTag(image), "v"), "app.kubernetes.io/component": "control-plane",
				"app.kubernetes.io/managed-by": "Talos",
			},
			"annotations": map[string]any{annotationConfigVersion: version.String()},
		},
		"spec": map[string]any{
			"hostNetwork":       true,
			"priorityClassName": "system-cluster-critical",
			"containers": []any{map[string]any{
				"name":    id,
				"image":   image,
				"command": toAny(command),
			}},
		},
	}
	return res
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// kubeletSpecResource is Talos' KubeletSpec (v1.14.1 controllers/k8s/kubelet_spec.go
// KubeletSpecController.Run): the image, and the command line of Talos' own flags merged with
// machine.kubelet.extraArgs (the extra args win, except on the flags Talos denies them), one
// --key=value per value, sorted by key (pkg/argsbuilder Args.Args).
func kubeletSpecResource(cfg config.Provider, nodename, address string) *k8s.KubeletSpec {
	res := k8s.NewKubeletSpec(k8s.NamespaceName, k8s.KubeletID)
	res.TypedSpec().Image = kubeletImage(cfg)
	res.TypedSpec().ExpectedNodename = nodename
	args := map[string][]string{
		"config":            {"/etc/kubernetes/kubelet.yaml"},
		"cert-dir":          {constants.KubeletPKIDir},
		"hostname-override": {nodename},
	}
	if !skipNodeRegistration(cfg) {
		args["bootstrap-kubeconfig"] = []string{constants.KubeletBootstrapKubeconfig}
		args["kubeconfig"] = []string{constants.KubeletKubeconfig}
	}
	var extra map[string][]string
	if k := cfg.K8sKubeletConfig(); k != nil {
		extra = k.ExtraArgs()
	}
	if _, ok := extra["node-ip"]; !ok {
		args["node-ip"] = []string{address}
	}
	denied := []string{"bootstrap-kubeconfig", "kubeconfig", "container-runtime", "container-runtime-endpoint", "config", "cert-dir"}
	for k, v := range extra {
		if !slices.Contains(denied, k) {
			args[k] = v
		}
	}
	if _, ok := extra["hostname-override"]; ok {
		res.TypedSpec().ExpectedNodename = ""
	}
	for _, k := range slices.Sorted(maps.Keys(args)) {
		for _, v := range args[k] {
			res.TypedSpec().Args = append(res.TypedSpec().Args, "--"+k+"="+v)
		}
	}
	return res
}

// ImagePull is machined's legacy ImagePull (v1.14.1 internal/app/machined/internal/server/
// v1alpha1/v1alpha1_images.go, deprecated for ImageService.Pull but what talosctl 1.14.1
// upgrade-k8s' prePullImages calls, into the CRI namespace for the control-plane images and the
// system one for the kubelet's): os:operator (authz.go). Every reference "pulls" (the simulator
// has no registry for Kubernetes images); the pull is kept in the node's image store and the
// timeline (TimelineImagePull).
func (n *Node) ImagePull(_ context.Context, req *machine.ImagePullRequest) (*machine.ImagePullResponse, error) {
	if !n.configured() {
		return nil, errMaintenanceUnimplemented("ImagePull")
	}
	ref := req.GetReference()
	if ref == "" {
		return nil, status.Error(codes.InvalidArgument, "image reference is required")
	}
	n.mu.Lock()
	if n.images == nil {
		n.images = map[string]bool{}
	}
	n.images[ref] = true
	n.mu.Unlock()
	n.trust.record(n.address.String(), TimelineImagePull, ref)
	return &machine.ImagePullResponse{Messages: []*machine.ImagePull{{}}}, nil
}

// SetKubeletNeverReady is the fault "the new kubelet never turns Ready": while set, the kubelet
// that starts next (a restart after a machine.kubelet change, or a boot) runs its new version but
// fails its health check, so its Service stays running and unhealthy, MachineStatus not ready,
// and its Node (with a real API server) NotReady. Clearing it lets that kubelet turn Ready.
func (n *Node) SetKubeletNeverReady(fails bool) {
	n.mu.Lock()
	n.pods.kubeletNeverReady = fails
	n.state.KubeletNeverReady = fails
	recovered := !fails && n.pods.kubeletFailing
	if recovered {
		n.pods.kubeletFailing = false
	}
	n.mu.Unlock()
	if recovered {
		n.refreshMachineStatus(context.Background())
		n.trust.settle()
	}
}

// kubeletUnhealthy is true while a kubelet the fault caught runs.
func (n *Node) kubeletUnhealthy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods.kubeletFailing && !n.pods.kubeletRestarting
}

// Components are the control-plane components Talos runs as static pods, in upgrade-k8s' order.
func Components() []string { return slices.Clone(components) }
