package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
)

// The control plane's static pods and the kubelet, as Talos runs them and as slowly as it reports
// them (Talos v1.11.5):
//
//   - From the machine config, Talos' K8sControlPlane controller writes one config resource per
//     component (APIServerConfig, ControllerManagerConfig, SchedulerConfig in namespace
//     controlplane). Its COSI version moves only when its content changes; the static pod Talos
//     renders carries it as the annotation talos.dev/config-version
//     (internal/app/machined/pkg/controllers/k8s/control_plane_static_pod.go), which is how
//     `talosctl upgrade-k8s` knows the pod runs the new config (pkg/cluster/kubernetes/
//     talos_managed.go upgradeStaticPodOnNode, checkPodStatus: the mirror pod on that node with
//     the version and Ready).
//   - The kubelet replaces a static pod whose manifest changed: the new pod is not Ready until its
//     container starts (podStart here), and never when the component refuses its flags (the fault
//     SetStaticPodFails). The mirror pod in the API server shows that at once.
//   - Talos itself learns a pod's status only from the kubelet's /pods, which it polls every 15 s
//     (internal/app/machined/pkg/controllers/k8s/kubelet_static_pod.go:80): StaticPodStatus, and
//     with it MachineStatus' staticPods check (internal/app/machined/pkg/controllers/runtime/
//     machine_status.go staticPodsCheck), lag the pods by up to that interval (WithStaticPodLag).
//     So right after an in-place change a node still says "running, ready".
//   - A change of machine.kubelet restarts the kubelet service (kubeletRestart here): the service
//     is not healthy meanwhile (MachineStatus' services check sees that at once), and the Node's
//     kubeletVersion changes when the new kubelet posts its status.

// DefaultStaticPodLag is how often Talos refreshes StaticPodStatus in the simulation unless
// WithStaticPodLag says otherwise: small, for tests; Talos' own is 15 s.
const DefaultStaticPodLag = time.Second

// WithStaticPodLag sets how often the node refreshes its view of the static pods (StaticPodStatus,
// and with it MachineStatus): a pod's change shows there only at the next refresh.
func WithStaticPodLag(d time.Duration) Option {
	return func(o *options) { o.staticPodLag = d }
}

// The control-plane components Talos runs as static pods, in the order upgrade-k8s updates them.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
)

var components = []string{KubeAPIServer, KubeControllerManager, KubeScheduler}

// staticPod is one control-plane static pod as the kubelet runs it.
type staticPod struct {
	// version is the COSI version of the component's config resource the pod was started with.
	version resource.Version
	image   string
	ready   bool
	// generation tells a pending start apart from a later one.
	generation int
}

// podModel is a node's static pods, kubelet and Talos' view of them.
type podModel struct {
	lag time.Duration
	// inputs is, per component, what its config resource was made from (JSON), to tell a change.
	inputs map[string]string
	pods   map[string]*staticPod
	// seen is Talos' StaticPodStatus: each pod's readiness at the last refresh.
	seen map[string]bool
	// refresh is pending: a refresh timer is set.
	refresh bool
	fails   map[string]bool

	kubeletConfig     string
	kubeletVersion    string
	kubeletRestarting bool
	kubeletGeneration int
	// kubeletNeverReady is the fault SetKubeletNeverReady; kubeletFailing is true while the
	// kubelet it caught runs without turning Ready.
	kubeletNeverReady bool
	kubeletFailing    bool
}

// podStart is how long a replaced static pod takes to turn Ready; kubeletRestart how long the
// kubelet service is away when it restarts.
func (p *podModel) podStart() time.Duration       { return max(p.lag/2, 20*time.Millisecond) }
func (p *podModel) kubeletRestart() time.Duration { return max(p.lag/2, 20*time.Millisecond) }

func newPodModel(lag time.Duration) *podModel {
	return &podModel{lag: lag, inputs: map[string]string{}, pods: map[string]*staticPod{}, seen: map[string]bool{}, fails: map[string]bool{}}
}

// componentConfig is the config resource Talos makes of the machine config for a component
// (controllers/k8s/control_plane.go: ControlPlaneAPIServerController and its siblings read the
// K8s* accessors), and the inputs it is made from (JSON): a change to them is a new version.
func componentConfig(cfg config.Provider, component string) (resource.Resource, string) {
	var res resource.Resource
	var extra any
	switch component {
	case KubeAPIServer:
		c := cfg.K8sAPIServerConfig()
		r := k8s.NewAPIServerConfig(k8s.APIServerConfigID)
		r.TypedSpec().Image = c.Image()
		r.TypedSpec().ExtraArgs = argValues(c.ExtraArgs())
		r.TypedSpec().EnvironmentVariables = c.Env()
		r.TypedSpec().LocalPort = c.APIPort()
		r.TypedSpec().StartupProbesEnabled = c.StartupProbesEnabled()
		r.TypedSpec().UseAuthenticationConfig = c.UseAuthenticationConfig()
		r.TypedSpec().ServiceCIDRs = serviceCIDRs(cfg)
		if ep := clusterEndpoint(cfg); ep != nil {
			r.TypedSpec().ControlPlaneEndpoint = ep.String()
		}
		extra = []any{volumesOf(c.ExtraVolumes()), resourcesOf(c.Resources())}
		res = r
	case KubeControllerManager:
		c := cfg.K8sControllerManagerConfig()
		r := k8s.NewControllerManagerConfig(k8s.ControllerManagerConfigID)
		r.TypedSpec().Enabled = c.Enabled()
		r.TypedSpec().Image = c.Image()
		r.TypedSpec().ExtraArgs = argValues(c.ExtraArgs())
		r.TypedSpec().EnvironmentVariables = c.Env()
		r.TypedSpec().PodCIDRs = podCIDRs(cfg)
		r.TypedSpec().ServiceCIDRs = serviceCIDRs(cfg)
		extra = []any{volumesOf(c.ExtraVolumes()), resourcesOf(c.Resources())}
		res = r
	default:
		c := cfg.K8sSchedulerConfig()
		r := k8s.NewSchedulerConfig(k8s.SchedulerConfigID)
		r.TypedSpec().Enabled = c.Enabled()
		r.TypedSpec().Image = c.Image()
		r.TypedSpec().ExtraArgs = argValues(c.ExtraArgs())
		r.TypedSpec().EnvironmentVariables = c.Env()
		r.TypedSpec().Config = c.Config()
		extra = []any{volumesOf(c.ExtraVolumes()), resourcesOf(c.Resources())}
		res = r
	}
	return res, jsonOf(res.Spec()) + jsonOf(extra)
}

// finalConfig is Talos 1.14's final-<component> config: the component's config with the command
// line Talos builds from it (control_plane_final.go): its own flags, among them the API server's
// service-account issuers and audiences from the Kubernetes root secrets (secrets/root.go, from
// K8sServiceAccountConfig), merged with the extra args. Only the flags that follow the machine
// config are modelled; the fixed ones (file paths, TLS settings) would not change a version.
func finalConfig(cfg config.Provider, plain resource.Resource) resource.Resource {
	args := func(binary string, own map[string]string, extra map[string]k8s.ArgValues) []string {
		merged := maps.Clone(own)
		for k, v := range extra {
			merged[k] = strings.Join(v.Values, ",")
		}
		out := []string{binary}
		for _, k := range slices.Sorted(maps.Keys(merged)) {
			out = append(out, "--"+k+"="+merged[k])
		}
		return out
	}
	switch in := plain.(type) {
	case *k8s.APIServerConfig:
		out := k8s.NewAPIServerConfig(k8s.FinalAPIServerConfigID)
		spec := *in.TypedSpec()
		own := map[string]string{
			"secure-port":              strconv.Itoa(spec.LocalPort),
			"service-cluster-ip-range": strings.Join(spec.ServiceCIDRs, ","),
		}
		if sa := cfg.K8sServiceAccountConfig(); sa != nil {
			own["service-account-issuer"] = strings.Join(append([]string{sa.IssuerURL()}, sa.AcceptedIssuers()...), ",")
			own["api-audiences"] = strings.Join(sa.APIAudiences(), ",")
		}
		spec.Args, spec.ExtraArgs = args("/usr/local/bin/kube-apiserver", own, spec.ExtraArgs), nil
		*out.TypedSpec() = spec
		return out
	case *k8s.ControllerManagerConfig:
		out := k8s.NewControllerManagerConfig(k8s.FinalControllerManagerConfigID)
		spec := *in.TypedSpec()
		own := map[string]string{
			"cluster-cidr":             strings.Join(spec.PodCIDRs, ","),
			"service-cluster-ip-range": strings.Join(spec.ServiceCIDRs, ","),
		}
		spec.Args, spec.ExtraArgs = args("/usr/local/bin/kube-controller-manager", own, spec.ExtraArgs), nil
		*out.TypedSpec() = spec
		return out
	case *k8s.SchedulerConfig:
		out := k8s.NewSchedulerConfig(k8s.FinalSchedulerConfigID)
		spec := *in.TypedSpec()
		spec.Args, spec.ExtraArgs = args("/usr/local/bin/kube-scheduler", map[string]string{}, spec.ExtraArgs), nil
		*out.TypedSpec() = spec
		return out
	}
	return plain
}

func volumesOf(vs []talosconfig.VolumeMount) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s:%s:%s:%t", v.Name(), v.HostPath(), v.MountPath(), v.ReadOnly()))
	}
	return out
}

func resourcesOf(r talosconfig.Resources) []string {
	if r == nil {
		return nil
	}
	return []string{r.CPURequests(), r.MemoryRequests(), r.CPULimits(), r.MemoryLimits()}
}

// jsonOf is v as JSON, to compare inputs by.
func jsonOf(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

// podsConfigured is Talos' reaction to an active config: the config resources of a control
// plane's components (a new COSI version when their content changed) and the static pods the
// kubelet replaces for them; a restart of the kubelet when machine.kubelet changed. booted is
// true at a boot: everything starts afresh and, as on a machine that reached "running", ready.
func (n *Node) podsConfigured(ctx context.Context, cfg config.Provider, booted bool) {
	p := n.pods
	// Talos' Nodename: the Node name the kubelet registers (k8s/nodename.go), from the hostname.
	nodename := k8s.NewNodename(k8s.NamespaceName, k8s.NodenameID)
	n.mu.Lock()
	nodename.TypedSpec().Nodename = nodeName(n.state.Hostname)
	n.mu.Unlock()
	if err := put(ctx, n.cosi, nodename); err != nil {
		log.Printf("node %s: nodename: %v", n.address, err)
	}
	// Talos' KubeletConfig (controllers/k8s/kubelet_config.go): the kubelet's source settings from
	// the active config, machine.kubelet.image among them. Not Sensitive: os:reader may get it.
	kubeletConfig := k8s.NewKubeletConfig(k8s.NamespaceName, k8s.KubeletID)
	kubeletConfig.TypedSpec().Image = kubeletImage(cfg)
	kubeletConfig.TypedSpec().ClusterDomain = dnsDomain(cfg)
	if err := put(ctx, n.cosi, kubeletConfig); err != nil {
		log.Printf("node %s: kubelet config: %v", n.address, err)
	}
	controlPlane := cfg.Machine().Type().IsControlPlane()
	n.mu.Lock()
	running := n.state.TalosVersion
	n.mu.Unlock()
	if controlPlane {
		if err := put(ctx, n.cosi, bootstrapManifestsConfig(cfg, running)); err != nil {
			log.Printf("node %s: bootstrap manifests config: %v", n.address, err)
		}
		n.manifestsConfigured(ctx, cfg)
	}
	var started []string
	// newVersions are the components (and images) that start on another image version than they
	// ran before here (not their first start): TimelineComponent entries.
	var newVersions [][2]string
	for _, c := range components {
		if !controlPlane {
			continue
		}
		res, inputs := componentConfig(cfg, c)
		// Talos 1.14 renders the static pod from a second resource, final-<component>, which its
		// own controller makes of the first (controllers/k8s/control_plane_final.go), and stamps
		// that one's version into the pod (control_plane_static_pod.go, k8stemplates).
		made := []struct {
			res    resource.Resource
			inputs string
		}{{res, inputs}}
		if releaseAtLeast(running, 14) {
			final := finalConfig(cfg, res)
			made = append(made, struct {
				res    resource.Resource
				inputs string
			}{final, jsonOf(final.Spec())})
		}
		failed := false
		for _, m := range made {
			id := m.res.Metadata().ID()
			n.mu.Lock()
			changed := p.inputs[id] != m.inputs
			p.inputs[id] = m.inputs
			n.mu.Unlock()
			if changed {
				if err := put(ctx, n.cosi, m.res); err != nil {
					log.Printf("node %s: %s config: %v", n.address, id, err)
					failed = true
				}
			}
		}
		if failed {
			continue
		}
		stored, err := n.cosi.Get(ctx, made[len(made)-1].res.Metadata())
		if err != nil {
			log.Printf("node %s: %s config: %v", n.address, c, err)
			continue
		}
		if err := put(ctx, n.cosi, staticPodResource(cfg, res, stored.Metadata().Version())); err != nil {
			log.Printf("node %s: %s static pod: %v", n.address, c, err)
		}
		n.mu.Lock()
		pod := p.pods[c]
		if pod == nil || booted || !pod.version.Equal(stored.Metadata().Version()) {
			gen := 1
			image, _ := componentImage(cfg, c)
			if pod != nil {
				gen = pod.generation + 1
			}
			if pod != nil && imageTag(pod.image) != imageTag(image) {
				newVersions = append(newVersions, [2]string{c, image})
			}
			pod = &staticPod{version: stored.Metadata().Version(), image: image, generation: gen}
			p.pods[c] = pod
			if booted && !p.fails[c] {
				pod.ready = true
				p.seen[c] = true
			} else if !booted {
				started = append(started, c)
			}
		}
		n.mu.Unlock()
	}
	n.mu.Lock()
	hostname := n.state.Hostname
	n.mu.Unlock()
	if err := put(ctx, n.cosi, kubeletSpecResource(cfg, nodeName(hostname), n.address.String())); err != nil {
		log.Printf("node %s: kubelet spec: %v", n.address, err)
	}
	kubelet := kubeletInputs(cfg)
	n.mu.Lock()
	restart := !booted && p.kubeletConfig != "" && p.kubeletConfig != kubelet
	p.kubeletConfig = kubelet
	if booted || p.kubeletVersion == "" {
		if p.kubeletVersion != "" && p.kubeletVersion != kubeletVersion(cfg) {
			newVersions = append(newVersions, [2]string{"kubelet", kubeletImage(cfg)})
		}
		p.kubeletVersion, p.kubeletRestarting = kubeletVersion(cfg), false
		p.kubeletFailing = p.kubeletNeverReady
	}
	var kubeletGen int
	if restart {
		p.kubeletRestarting = true
		p.kubeletGeneration++
		kubeletGen = p.kubeletGeneration
	}
	n.mu.Unlock()
	for _, v := range newVersions {
		n.trust.recordComponent(n.address.String(), v[0], v[1])
	}
	if booted {
		n.writeStaticPodStatus(ctx)
	}
	for _, c := range started {
		n.startPod(c)
	}
	if restart {
		// The stopped service's resource goes at once (etcd.go servicesWith), as on Talos.
		if err := n.cosi.Destroy(ctx, v1alpha1.NewService("kubelet").Metadata()); err != nil && !state.IsNotFoundError(err) {
			log.Printf("node %s: kubelet service: %v", n.address, err)
		}
		n.refreshMachineStatus(ctx)
		version, image := kubeletVersion(cfg), kubeletImage(cfg)
		time.AfterFunc(p.kubeletRestart(), func() {
			n.mu.Lock()
			current := p.kubeletGeneration == kubeletGen
			changed := false
			if current {
				changed = p.kubeletVersion != version
				p.kubeletRestarting, p.kubeletVersion = false, version
				p.kubeletFailing = p.kubeletNeverReady
			}
			n.mu.Unlock()
			if changed {
				n.trust.recordComponent(n.address.String(), "kubelet", image)
			}
			if current {
				n.refreshMachineStatus(context.Background())
				n.trust.settle()
			}
		})
	}
}

// startPod is the kubelet replacing a static pod: not Ready now, Ready after podStart unless the
// fault makes its container exit (then it stays not Ready, as in CrashLoopBackOff). Talos sees
// either only at its next refresh.
func (n *Node) startPod(component string) {
	p := n.pods
	n.mu.Lock()
	pod := p.pods[component]
	pod.ready = false
	gen := pod.generation
	n.mu.Unlock()
	n.scheduleRefresh()
	time.AfterFunc(p.podStart(), func() {
		n.mu.Lock()
		pod := p.pods[component]
		current := pod != nil && pod.generation == gen && !p.fails[component]
		if current {
			pod.ready = true
		}
		n.mu.Unlock()
		if current {
			n.scheduleRefresh()
			n.trust.settle()
		}
	})
}

// scheduleRefresh makes Talos' view catch up at its next refresh, lag from now.
func (n *Node) scheduleRefresh() {
	p := n.pods
	n.mu.Lock()
	if p.refresh {
		n.mu.Unlock()
		return
	}
	p.refresh = true
	n.mu.Unlock()
	time.AfterFunc(p.lag, func() {
		n.mu.Lock()
		p.refresh = false
		for c, pod := range p.pods {
			p.seen[c] = pod.ready
		}
		n.mu.Unlock()
		ctx := context.Background()
		n.writeStaticPodStatus(ctx)
		n.refreshMachineStatus(ctx)
	})
}

// staticPodID is StaticPodStatus' id: the mirror pod's namespace and name.
func (n *Node) staticPodID(component string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "kube-system/" + component + "-" + nodeName(n.state.Hostname)
}

// writeStaticPodStatus shows Talos' view of the pods as StaticPodStatus resources.
func (n *Node) writeStaticPodStatus(ctx context.Context) {
	n.mu.Lock()
	seen := maps.Clone(n.pods.seen)
	n.mu.Unlock()
	for _, c := range slices.Sorted(maps.Keys(seen)) {
		res := k8s.NewStaticPodStatus(k8s.NamespaceName, n.staticPodID(c))
		status := "False"
		if seen[c] {
			status = "True"
		}
		res.TypedSpec().PodStatus = map[string]any{
			"phase":      "Running",
			"conditions": []any{map[string]any{"type": "Ready", "status": status}},
		}
		if err := put(ctx, n.cosi, res); err != nil {
			log.Printf("node %s: static pod status: %v", n.address, err)
		}
	}
}

// unmetConditions is MachineStatus' readiness checks the simulation models: services (the kubelet
// while it restarts) at once, static pods as of Talos' last refresh.
func (n *Node) unmetConditions() []runtime.UnmetCondition {
	n.mu.Lock()
	p := n.pods
	var notReady []string
	for _, c := range slices.Sorted(maps.Keys(p.seen)) {
		if !p.seen[c] {
			notReady = append(notReady, fmt.Sprintf("kube-system/%s-%s not ready", c, nodeName(n.state.Hostname)))
		}
	}
	restarting := p.kubeletRestarting || p.kubeletFailing
	n.mu.Unlock()
	var unmet []runtime.UnmetCondition
	if restarting {
		unmet = append(unmet, runtime.UnmetCondition{Name: "services", Reason: "kubelet not healthy"})
	}
	if len(notReady) > 0 {
		unmet = append(unmet, runtime.UnmetCondition{Name: "staticPods", Reason: strings.Join(notReady, ", ")})
	}
	return unmet
}

// refreshMachineStatus re-runs MachineStatus' checks in the running stage.
func (n *Node) refreshMachineStatus(ctx context.Context) {
	n.mu.Lock()
	running := n.state.Stage == runtime.MachineStageRunning.String() && n.cfg != nil
	n.mu.Unlock()
	if running {
		n.setStage(ctx, runtime.MachineStageRunning, true)
	}
}

// kubeletRestarting is true while the kubelet service restarts after a machine.kubelet change.
func (n *Node) kubeletRestarting() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods.kubeletRestarting
}

// runningKubeletVersion is the version of the kubelet that runs: the config's until a change
// restarts it.
func (n *Node) runningKubeletVersion() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods.kubeletVersion
}

// mirrorPod is a static pod as the kubelet mirrors it into the API server.
type mirrorPod struct {
	component string
	version   string
	image     string
	ready     bool
}

// mirrorPods are the node's static pods as they run now (not as Talos last saw them).
func (n *Node) mirrorPods() []mirrorPod {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []mirrorPod
	for _, c := range components {
		if pod, ok := n.pods.pods[c]; ok {
			out = append(out, mirrorPod{component: c, version: pod.version.String(), image: pod.image, ready: pod.ready})
		}
	}
	return out
}

// apiServerReady is true while the node's kube-apiserver pod runs and is Ready.
func (n *Node) apiServerReady() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	pod, ok := n.pods.pods[KubeAPIServer]
	return ok && pod.ready && n.state.Up
}

// SetStaticPodFails is the fault "the component refuses its configuration" (as a kube-apiserver
// given a flag it does not know exits at once): while set, the component's pod never turns Ready
// when it (re)starts, which happens when its config changes or the machine boots. Clearing it
// lets a pod that is failing start (the kubelet keeps restarting it).
func (n *Node) SetStaticPodFails(component string, fails bool) error {
	if !slices.Contains(components, component) {
		return fmt.Errorf("component %q is not one of %s", component, strings.Join(components, ", "))
	}
	n.mu.Lock()
	n.pods.fails[component] = fails
	n.state.StaticPodFails = slices.DeleteFunc(slices.Sorted(maps.Keys(n.pods.fails)), func(c string) bool { return !n.pods.fails[c] })
	pod := n.pods.pods[component]
	restart := !fails && pod != nil && !pod.ready
	n.mu.Unlock()
	if restart {
		n.startPod(component)
	}
	return nil
}

// bootstrapManifestsConfig is the part of Talos' BootstrapManifestsConfig (a control plane's, in
// namespace controlplane; controllers/k8s/control_plane.go ControlPlaneBootstrapManifestsController)
// that clients read: talosctl 1.13+ health skips the node-readiness and CoreDNS checks when its
// cniName is "none" (pkg/cluster/check/default.go cniDisabledStatus). cniName exists from Talos
// 1.13 on (machinery resources/k8s/manifests_config.go): 1.13 copies cluster.network.cni.name
// (flannel when unset), 1.14 says flannel when the config has a Flannel CNI and none otherwise
// (control_plane.go:456-493). Earlier releases leave it empty.
func bootstrapManifestsConfig(cfg config.Provider, running string) *k8s.BootstrapManifestsConfig {
	res := k8s.NewBootstrapManifestsConfig()
	spec := res.TypedSpec()
	spec.ClusterDomain = dnsDomain(cfg)
	spec.PodCIDRs = podCIDRs(cfg)
	if ep := clusterEndpoint(cfg); ep != nil {
		spec.Server = ep.String()
	}
	switch {
	case releaseAtLeast(running, 14):
		spec.CNIName = constants.NoneCNI
		if cfg.K8sFlannelCNIConfig() != nil {
			spec.CNIName = constants.FlannelCNI
		}
	case releaseAtLeast(running, 13):
		spec.CNIName = constants.FlannelCNI
		// 1.13 reads the v1alpha1 section only (it has no Kubernetes documents).
		if raw := cfg.RawV1Alpha1(); raw != nil && raw.ClusterConfig != nil {
			if n := raw.ClusterConfig.ClusterNetwork; n != nil && n.CNI != nil && n.CNI.CNIName != "" {
				spec.CNIName = n.CNI.CNIName
			}
		}
	}
	return res
}
