package judge

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
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
		msg := oneLine(e.Error())
		if w, ok := strings.CutPrefix(msg, strictWarning); ok {
			v.warnings = append(v.warnings, w)
			continue
		}
		v.errors = append(v.errors, describeInvalid(msg))
	}
	for i, w := range v.warnings {
		v.warnings[i] = describeWarning(oneLine(w))
	}
	v.errors = append(v.errors, beyondTalos(cfg)...)
	v.errors = dedupe(v.errors)
	v.warnings = dedupe(v.warnings)
	return v
}

// notChecked marks a refusal of this tool, not of Talos' validator.
const notChecked = "Talos does not check this; Kubernetes would fail to start"

// beyondTalos refuses what Talos' validator lets through although the cluster cannot work with
// it: the pod and service subnets go unchecked to kube-apiserver and kube-controller-manager
// (--service-cluster-ip-range, --cluster-cidr), which then fail to start on every control plane.
func beyondTalos(cfg coreconfig.Provider) []string {
	if cfg.Cluster() == nil || cfg.Cluster().Network() == nil {
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
	check("podSubnets", cfg.Cluster().Network().PodCIDRs())
	check("serviceSubnets", cfg.Cluster().Network().ServiceCIDRs())
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
