package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"

	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
)

// In-place changes land after Talos answers: ApplyConfiguration returns once the config is stored
// (Talos v1.11.5 internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go), and the
// static pods and the kubelet are rebuilt afterwards. MachineStatus does not tell: it learns a
// static pod's status only every 15 s (controllers/k8s/kubelet_static_pod.go). So after an apply
// Talos answers NO_REBOOT, the rollout waits as `talosctl upgrade-k8s` does
// (pkg/cluster/kubernetes/talos_managed.go upgradeStaticPodOnNode, checkPodStatus; kubelet.go):
// each control-plane component whose config changed has a new config resource version, and the
// node's mirror pod of it carries that version (talos.dev/config-version) and is Ready; the Node
// reports the declared kubelet version and Ready; every control plane's own :6443/readyz answers.
// Before each node's turn, the nodes done so far are checked the same way.

// InPlace is the phase of waiting for an in-place change to land; ClusterCheck the re-check of
// the nodes already done before a node's turn.
const (
	InPlace      Phase = "in-place change"
	ClusterCheck Phase = "cluster check"
)

// staticPods are the control-plane components Talos runs as static pods, with the type of their
// config resources, in the order upgrade-k8s updates them, and what of a machine config each is
// made of. The settings are read through machinery's K8s* accessors, which serve a config of
// either contract: the v1alpha1 cluster.apiServer/controllerManager/scheduler sections (1.11
// contract) or the KubeAPIServerConfig, KubeControllerManagerConfig and KubeSchedulerConfig
// documents (1.14 contract), as Talos' own controllers do (v1.14.1
// internal/app/machined/pkg/controllers/k8s/control_plane.go). The API server's also follows
// the service-account issuers and audiences (control_plane_final.go, from secrets/root.go).
var staticPods = []struct {
	component string
	md        resource.Metadata
	inputs    func(config.Config) any
}{
	{"kube-apiserver", k8s.NewAPIServerConfig(k8s.APIServerConfigID).Metadata().Copy(), func(c config.Config) any {
		out := []any{component(c.K8sAPIServerConfig()), c.K8sAPIServerConfig().APIPort(), c.K8sAPIServerConfig().StartupProbesEnabled(), c.K8sAPIServerConfig().UseAuthenticationConfig()}
		if sa := c.K8sServiceAccountConfig(); sa != nil {
			out = append(out, sa.IssuerURL(), sa.AcceptedIssuers(), sa.APIAudiences())
		}
		return out
	}},
	{"kube-controller-manager", k8s.NewControllerManagerConfig(k8s.ControllerManagerConfigID).Metadata().Copy(), func(c config.Config) any {
		return []any{component(c.K8sControllerManagerConfig()), c.K8sControllerManagerConfig().Enabled()}
	}},
	{"kube-scheduler", k8s.NewSchedulerConfig(k8s.SchedulerConfigID).Metadata().Copy(), func(c config.Config) any {
		return []any{component(c.K8sSchedulerConfig()), c.K8sSchedulerConfig().Enabled(), c.K8sSchedulerConfig().Config()}
	}},
}

// componentSettings are what the three components' accessors have in common.
type componentSettings interface {
	Image() string
	ExtraArgs() map[string][]string
	ExtraVolumes() []talosconfig.VolumeMount
	Env() talosconfig.Env
	Resources() talosconfig.Resources
}

func component(c componentSettings) any {
	var volumes []string
	for _, v := range c.ExtraVolumes() {
		volumes = append(volumes, fmt.Sprintf("%s:%s:%s:%t", v.Name(), v.HostPath(), v.MountPath(), v.ReadOnly()))
	}
	var resources []string
	if r := c.Resources(); r != nil {
		resources = []string{r.CPURequests(), r.MemoryRequests(), r.CPULimits(), r.MemoryLimits()}
	}
	return []any{c.Image(), c.ExtraArgs(), volumes, c.Env(), resources}
}

// versions are a control plane's config resource versions by component.
type versions map[string]string

// configVersions reads the versions of a control plane's component config resources.
func (r *runner) configVersions(ctx context.Context, n Node) (versions, error) {
	out := versions{}
	if !n.ControlPlane {
		return out, nil
	}
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return nil, err
	}
	defer c.Close() //nolint:errcheck
	for _, sp := range staticPods {
		// Talos 1.14 renders the static pod from final-<component> and stamps that resource's
		// version into the pod; earlier releases have only <component>. The two count their
		// versions apart, so read the one the node serves, final first, as talosctl upgrade-k8s
		// does (v1.14.1 pkg/cluster/kubernetes/talos_managed.go watchControlPlaneConfig).
		var res resource.Resource
		for _, id := range []resource.ID{k8s.FinalPrefix + sp.component, sp.component} {
			md := resource.NewMetadata(sp.md.Namespace(), sp.md.Type(), id, resource.VersionUndefined)
			if res, err = safe.StateGet[resource.Resource](ctx, c.COSI, md); err == nil || !state.IsNotFoundError(err) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s config: %w", sp.component, err)
		}
		out[sp.component] = res.Metadata().Version().String()
	}
	return out, nil
}

// settings are a component's inputs in a config as JSON, to compare two configs by them.
func settings(cfg config.Provider, get func(config.Config) any) string {
	if cfg == nil {
		return ""
	}
	data, _ := json.Marshal(get(cfg))
	return string(data)
}

// changedComponents are the static pods whose settings differ between two configs.
func changedComponents(live, declared config.Provider) []string {
	var out []string
	for _, sp := range staticPods {
		if settings(live, sp.inputs) != settings(declared, sp.inputs) {
			out = append(out, sp.component)
		}
	}
	return out
}

// kubeNodeName is the name of the node's Node: Talos' Nodename resource (the one its kubelet
// registers, derived from the hostname however the config sets it).
func (r *runner) kubeNodeName(ctx context.Context, n Node) (string, error) {
	c, err := node.Dial(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return "", err
	}
	defer c.Close() //nolint:errcheck
	res, err := safe.StateGetByID[*k8s.Nodename](ctx, c.COSI, k8s.NodenameID)
	if err != nil {
		return "", fmt.Errorf("nodename: %w", err)
	}
	return res.TypedSpec().Nodename, nil
}

// kube is the cluster's API with an admin kubeconfig from a control plane's Kubeconfig RPC (as
// talosctl upgrade-k8s gets it), made once per run.
func (r *runner) kube(ctx context.Context) (*kube.Client, error) {
	r.kubeMu.Lock()
	defer r.kubeMu.Unlock()
	if r.kubeClient != nil {
		return r.kubeClient, nil
	}
	var errs []string
	for _, m := range r.members {
		c, err := node.Dial(ctx, m.Target, r.opts.Creds())
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", m.Target.Name, err))
			continue
		}
		data, err := c.Kubeconfig(ctx)
		c.Close() //nolint:errcheck
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", m.Target.Name, node.Describe(err)))
			continue
		}
		k, err := kube.New(string(data))
		if err != nil {
			return nil, err
		}
		r.kubeClient = k
		return k, nil
	}
	return nil, fmt.Errorf("no control plane gave an admin kubeconfig: %s", strings.Join(errs, "; "))
}

// apiServers are every control plane's own API server, https://<address>:6443.
func (r *runner) apiServers() []string {
	var out []string
	for _, m := range r.members {
		host := m.Target.Address
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		out = append(out, "https://"+net.JoinHostPort(host, "6443"))
	}
	return out
}

// landed is "" when the node runs its declared config in Kubernetes, else what is not there yet:
// on a control plane each component's mirror pod at the node's current config version (and past
// before, for the components in moved) and Ready; the Node Ready with the declared kubelet.
func (r *runner) landed(ctx context.Context, k *kube.Client, n Node, before versions, moved []string) string {
	cfg, err := configloader.NewFromBytes(n.Config)
	if err != nil {
		return "the declared config does not decode"
	}
	name, err := r.kubeNodeName(ctx, n)
	if err != nil {
		return fmt.Sprintf("%s: %s", n.Target.Name, node.Describe(err))
	}
	bases := r.apiServers()
	var problems []string
	if n.ControlPlane {
		now, err := r.configVersions(ctx, n)
		if err != nil {
			return fmt.Sprintf("%s: %s", n.Target.Name, node.Describe(err))
		}
		for _, sp := range staticPods {
			want := now[sp.component]
			if slices.Contains(moved, sp.component) && want == before[sp.component] {
				problems = append(problems, fmt.Sprintf("%s: Talos' config still at version %s", sp.component, want))
				continue
			}
			pod, err := k.MirrorPod(ctx, bases, sp.component, name)
			switch {
			case err != nil:
				problems = append(problems, err.Error())
			case pod.ConfigVersion != want:
				problems = append(problems, fmt.Sprintf("%s at config version %q, Talos' is %s", pod.Name, pod.ConfigVersion, want))
			case !pod.Ready:
				problems = append(problems, fmt.Sprintf("%s at config version %s, not Ready", pod.Name, want))
			}
		}
	}
	var kubelet string
	if k := cfg.K8sKubeletConfig(); k != nil {
		kubelet = node.ImageTag(k.Image())
	}
	info, err := k.Node(ctx, bases, name)
	switch {
	case err != nil:
		problems = append(problems, err.Error())
	case info.KubeletVersion != kubelet:
		problems = append(problems, fmt.Sprintf("Node %s reports kubelet %s, declared %s", name, info.KubeletVersion, kubelet))
	case !info.Ready:
		problems = append(problems, fmt.Sprintf("Node %s not Ready", name))
	}
	return strings.Join(problems, "; ")
}

// readyz is "" when every control plane's own API server answers /readyz.
func (r *runner) readyz(ctx context.Context, k *kube.Client) string {
	var problems []string
	for _, base := range r.apiServers() {
		if err := k.ReadyzAt(ctx, base); err != nil {
			problems = append(problems, fmt.Sprintf("%s/readyz: %s", base, err))
		}
	}
	return strings.Join(problems, "; ")
}

// inPlaceBefore is what an in-place wait compares with: the node's config resource versions and
// which components the declared config changes. ok is false when the rollout does not wait.
func (r *runner) inPlaceBefore(ctx context.Context, n Node) (before versions, moved []string, ok bool, err error) {
	if !r.opts.Kubernetes {
		return nil, nil, false, nil
	}
	live, err := node.Read(ctx, n.Target, r.opts.Creds())
	if err != nil {
		return nil, nil, false, err
	}
	declared, err := configloader.NewFromBytes(n.Config)
	if err != nil {
		return nil, nil, false, err
	}
	if before, err = r.configVersions(ctx, n); err != nil {
		return nil, nil, false, err
	}
	if n.ControlPlane {
		moved = changedComponents(live.Config, declared)
	}
	return before, moved, true, nil
}

// awaitInPlace waits until an in-place change has landed on the node and every control plane's
// API server answers, logging what it waits for as it changes.
func (r *runner) awaitInPlace(ctx context.Context, n Node, before versions, moved []string) error {
	k, err := r.kube(ctx)
	if err != nil {
		return &Error{Node: n.Target, Phase: InPlace, Expected: "an admin kubeconfig to watch the change land", Seen: err.Error()}
	}
	if len(moved) > 0 {
		r.log("%s: waiting for %s to run the new config and be Ready", n.Target, strings.Join(moved, ", "))
	}
	last := ""
	seen, err := r.poll(ctx, "", func(ctx context.Context) (bool, string, error) {
		problems := r.landed(ctx, k, n, before, moved)
		if p := r.readyz(ctx, k); p != "" {
			problems = strings.Trim(problems+"; "+p, "; ")
		}
		if problems != "" && problems != last {
			r.log("%s: waiting: %s", n.Target, problems)
			last = problems
		}
		return problems == "", problems, nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: InPlace, Expected: fmt.Sprintf("the change landed within %s: static pods at their new config version and Ready, the Node Ready with the declared kubelet, every control plane's /readyz", r.opts.HealthTimeout), Seen: seen}
	}
	r.log("%s: the change has landed", n.Target)
	return nil
}

// recheckDone checks, before n's turn, every node done so far and every control plane's API server.
func (r *runner) recheckDone(ctx context.Context, n Node) error {
	if !r.opts.Kubernetes {
		return nil
	}
	r.mu.Lock()
	done := slices.Clone(r.done)
	r.mu.Unlock()
	k, err := r.kube(ctx)
	if err != nil {
		return &Error{Node: n.Target, Phase: ClusterCheck, Expected: "an admin kubeconfig to check the nodes done", Seen: err.Error()}
	}
	seen, err := r.poll(ctx, fmt.Sprintf("%s: %s: waiting for the nodes done so far and every control plane's /readyz", n.Target.Where(), ClusterCheck), func(ctx context.Context) (bool, string, error) {
		var problems []string
		for _, d := range done {
			if d.step {
				continue // between releases: its config is the one it had; readyz and the gates judge it
			}
			if p := r.landed(ctx, k, d, nil, nil); p != "" {
				problems = append(problems, d.Target.Name+": "+p)
			}
		}
		if p := r.readyz(ctx, k); p != "" {
			problems = append(problems, p)
		}
		return len(problems) == 0, strings.Join(problems, "; "), nil
	})
	if err != nil {
		return &Error{Node: n.Target, Phase: ClusterCheck, Expected: "every node done so far still running its config, Ready, and every control plane's /readyz", Seen: seen}
	}
	return nil
}
