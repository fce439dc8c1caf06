package judge

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	yamlv4 "go.yaml.in/yaml/v4"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/meta"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
)

// metal is Talos' runtime mode for bare metal (machined's runtime.ModeMetal, which machinery does
// not export): it requires install instructions and is not a container.
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

// verdict is what validation says of one config: refusals and warnings, as user-facing messages.
type verdict struct {
	errors   []string
	warnings []string
}

// strictWarning is how strict mode turns a v1alpha1 warning into an error
// (v1alpha1_validation.go: fmt.Errorf("warning: %s", w)).
const strictWarning = "warning: "

// validate runs Talos' validator for bare metal in strict mode. Strict mode folds the v1alpha1
// warnings into the errors with a "warning: " prefix; they are split back out, so a deprecated
// field warns (as the node, which validates without strict, would accept it) rather than refuses.
func validate(cfg coreconfig.Provider) verdict {
	var v verdict
	warnings, err := cfg.Validate(metal{}, validation.WithStrict())
	v.warnings = append(v.warnings, warnings...)
	for _, e := range errorList(err) {
		msg := unwrap(oneLine(e.Error()))
		if w, ok := strings.CutPrefix(msg, strictWarning); ok {
			v.warnings = append(v.warnings, w)
			continue
		}
		v.errors = append(v.errors, describeInvalid(msg))
	}
	for i, w := range v.warnings {
		v.warnings[i] = describeWarning(unwrap(oneLine(w)))
	}
	v.errors = append(v.errors, beyondTalos(cfg)...)
	v.errors = append(v.errors, listArgs(cfg)...)
	v.errors = dedupe(v.errors)
	v.warnings = dedupe(v.warnings)
	return v
}

// judgeConfig is validate plus the Kubernetes flags, feature gates and admission plugins the
// declared release no longer has (removed.go): Talos' validator does not know them, and the
// component would fail to start with them.
func judgeConfig(cfg coreconfig.Provider, kubernetes string) verdict {
	v := validate(cfg)
	v.errors = dedupe(append(v.errors, removedItems(cfg, kubernetes)...))
	return v
}

// notChecked marks a refusal of this tool, not of Talos' validator.
const notChecked = "Talos does not check this; Kubernetes would fail to start"

// beyondTalos refuses what Talos' validator lets through although the cluster cannot work with
// it: the pod and service subnets go unchecked to kube-apiserver and kube-controller-manager
// (--service-cluster-ip-range, --cluster-cidr), which then fail to start on every control plane.
func beyondTalos(cfg coreconfig.Provider) []string {
	// The raw v1alpha1 strings: from machinery 1.14 on, K8sNetworkConfig().PodCIDRs() returns
	// parsed prefixes and drops what does not parse (v1alpha1_clusterconfig.go), so it cannot
	// show what is wrong.
	raw := cfg.RawV1Alpha1()
	if raw == nil || raw.ClusterConfig == nil || raw.ClusterConfig.ClusterNetwork == nil {
		return nil
	}
	var out []string
	check := func(key string, cidrs []string) {
		for i, c := range cidrs {
			if _, err := netip.ParsePrefix(c); err != nil {
				out = append(out, fmt.Sprintf("cluster.network.%s[%d]: %q is not a CIDR (%s)", key, i, c, notChecked))
			}
		}
	}
	check("podSubnets", raw.ClusterConfig.ClusterNetwork.PodSubnet)
	check("serviceSubnets", raw.ClusterConfig.ClusterNetwork.ServiceSubnet)
	return out
}

// listArgs refuses an extraArgs value given as a list. machinery 1.13 made extraArgs take a
// string or a list of strings (meta.Args); the talos plugin's config library (v1.9.2) and the
// Talos 1.11/1.12 nodes decode extraArgs as map[string]string and refuse a list, so the config
// would fail in the plugin. The words in brackets are that library's (go-yaml v3's decoder).
func listArgs(cfg coreconfig.Provider) []string {
	raw := cfg.RawV1Alpha1()
	if raw == nil {
		return nil
	}
	var out []string
	check := func(key string, args meta.Args) {
		for _, name := range slices.Sorted(maps.Keys(args)) {
			if v, err := args[name].MarshalYAML(); err == nil {
				if node, ok := v.(*yamlv4.Node); ok && node.Kind == yamlv4.SequenceNode {
					out = append(out, fmt.Sprintf("%s.extraArgs.%s: a list where Talos expects a string (Talos: cannot unmarshal !!seq into string)", key, name))
				}
			}
		}
	}
	if m := raw.MachineConfig; m != nil && m.MachineKubelet != nil {
		check("machine.kubelet", m.MachineKubelet.KubeletExtraArgs)
	}
	if c := raw.ClusterConfig; c != nil {
		if c.APIServerConfig != nil {
			check("cluster.apiServer", c.APIServerConfig.ExtraArgsConfig)
		}
		if c.ControllerManagerConfig != nil {
			check("cluster.controllerManager", c.ControllerManagerConfig.ExtraArgsConfig)
		}
		if c.ProxyConfig != nil {
			check("cluster.proxy", c.ProxyConfig.ExtraArgsConfig)
		}
		if c.SchedulerConfig != nil {
			check("cluster.scheduler", c.SchedulerConfig.ExtraArgsConfig)
		}
		if c.EtcdConfig != nil {
			check("cluster.etcd", c.EtcdConfig.EtcdExtraArgs)
		}
	}
	return out
}

func dedupe(list []string) []string {
	out := list[:0:0]
	for _, s := range list {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// oneLine collapses Talos' multi-line messages (multierror lists, YAML dumps) onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
