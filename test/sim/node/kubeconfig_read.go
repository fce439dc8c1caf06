package node

import (
	"net/netip"
	"net/url"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/gen/xslices"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

// The Kubernetes settings of a machine config are read as Talos' controllers read them: through
// machinery's K8s* accessors (pkg/machinery/config/config/k8s.go), which serve both shapes a
// config can take. A config of the 1.11 contract keeps them in the v1alpha1 cluster and machine
// sections (served by config/types/v1alpha1/v1alpha1_k8s_bridge.go); one of the 1.14 contract in
// KubeClusterConfig, KubeNetworkConfig, KubeletConfig, KubeNodeConfig, KubeAPIServerCAConfig,
// KubeAPIServerConfig, ... documents (config/container/container.go prefers a document to the
// v1alpha1 section). An accessor is nil when neither shape sets it; the helpers below then give
// what Talos defaults to, or nothing.

// clusterName is the cluster's name (controllers/cluster/info.go, secrets/root.go).
func clusterName(cfg config.Provider) string {
	if c := cfg.K8sClusterConfig(); c != nil {
		return c.ClusterName()
	}
	return ""
}

// clusterEndpoint is the cluster's Kubernetes endpoint, nil when unset.
func clusterEndpoint(cfg config.Provider) *url.URL {
	if c := cfg.K8sClusterConfig(); c != nil {
		return c.ClusterEndpoint()
	}
	return nil
}

// clusterIssuingCA is the Kubernetes CA with its key (control planes only; secrets/root.go
// KubernetesRoot.IssuingCA), nil when the config has none.
func clusterIssuingCA(cfg config.Provider) *x509.PEMEncodedCertificateAndKey {
	if c := cfg.K8sAPIServerCAConfig(); c != nil {
		return c.IssuingCA()
	}
	return nil
}

// clusterCACert is the certificate of the Kubernetes CA the machine trusts first (the issuing
// one; a worker has no key, only the certificate), nil when the config has none: Talos refuses
// such a config ("missing cluster.CA secret", secrets/root.go).
func clusterCACert(cfg config.Provider) []byte {
	if c := cfg.K8sAPIServerCAConfig(); c != nil {
		if accepted := c.AcceptedCAs(); len(accepted) > 0 {
			return accepted[0].Crt
		}
	}
	return nil
}

// aggregatorCA is the front-proxy CA with its key, nil when unset.
func aggregatorCA(cfg config.Provider) *x509.PEMEncodedCertificateAndKey {
	if c := cfg.K8sAggregatorCAConfig(); c != nil {
		return c.IssuingCA()
	}
	return nil
}

// serviceAccountKey is the key service-account tokens are signed with, nil when unset.
func serviceAccountKey(cfg config.Provider) *x509.PEMEncodedKey {
	if c := cfg.K8sServiceAccountConfig(); c != nil {
		return c.IssuingKey()
	}
	return nil
}

func prefixes(ps []netip.Prefix) []string { return xslices.Map(ps, netip.Prefix.String) }

// serviceCIDRs are the service subnets (Talos' default when the config has no network settings).
func serviceCIDRs(cfg config.Provider) []string {
	if n := cfg.K8sNetworkConfig(); n != nil && len(n.ServiceCIDRs()) > 0 {
		return prefixes(n.ServiceCIDRs())
	}
	return []string{constants.DefaultIPv4ServiceCIDR}
}

// podCIDRs are the pod subnets, Talos' default when unset.
func podCIDRs(cfg config.Provider) []string {
	if n := cfg.K8sNetworkConfig(); n != nil && len(n.PodCIDRs()) > 0 {
		return prefixes(n.PodCIDRs())
	}
	return []string{constants.DefaultIPv4PodCIDR}
}

// dnsDomain is the cluster's DNS domain, Talos' default when unset.
func dnsDomain(cfg config.Provider) string {
	if n := cfg.K8sNetworkConfig(); n != nil && n.DNSDomain() != "" {
		return n.DNSDomain()
	}
	return constants.DefaultDNSDomain
}

// kubeletImage is the kubelet image ("" when the config sets no kubelet).
func kubeletImage(cfg config.Provider) string {
	if k := cfg.K8sKubeletConfig(); k != nil {
		return k.Image()
	}
	return ""
}

// kubeletExtraConfig is the kubelet's extra configuration (machine.kubelet.extraConfig or
// KubeletConfig.config).
func kubeletExtraConfig(cfg config.Provider) map[string]any {
	if k := cfg.K8sKubeletConfig(); k != nil {
		return k.ExtraConfig()
	}
	return nil
}

// kubeletInputs is what the kubelet service is made from: a change restarts it.
func kubeletInputs(cfg config.Provider) string {
	k := cfg.K8sKubeletConfig()
	if k == nil {
		return ""
	}
	inputs := map[string]any{"image": k.Image(), "args": k.ExtraArgs(), "mounts": k.ExtraMounts(), "config": k.ExtraConfig(),
		"clusterDNS": k.ClusterDNS(), "seccomp": k.DefaultRuntimeSeccompProfileEnabled(), "manifests": k.DisableManifestsDirectory()}
	// The node settings the kubelet's spec is also made of (controllers/k8s/kubelet_config.go).
	if n := cfg.K8sNodeConfig(); n != nil {
		inputs["node"] = []any{n.SkipNodeRegistration(), n.RegisterWithFQDN(), n.NodeIP().ValidSubnets()}
	}
	return jsonOf(inputs)
}

// nodeConfig is the Kubernetes node's settings: labels and taints with the control-plane ones a
// control plane gets (the v1alpha1 bridge adds them; a KubeNodeConfig lists them), and whether
// the kubelet registers a Node at all.
func nodeLabels(cfg config.Provider) map[string]string {
	if n := cfg.K8sNodeConfig(); n != nil {
		return n.Labels()
	}
	return nil
}

func nodeTaints(cfg config.Provider) map[string]string {
	if n := cfg.K8sNodeConfig(); n != nil {
		return n.Taints()
	}
	return nil
}

func skipNodeRegistration(cfg config.Provider) bool {
	n := cfg.K8sNodeConfig()
	return n != nil && n.SkipNodeRegistration()
}

// componentImage is a control-plane component's image.
func componentImage(cfg config.Provider, component string) (string, bool) {
	switch component {
	case KubeAPIServer:
		if c := cfg.K8sAPIServerConfig(); c != nil {
			return c.Image(), true
		}
	case KubeControllerManager:
		if c := cfg.K8sControllerManagerConfig(); c != nil {
			return c.Image(), true
		}
	case KubeScheduler:
		if c := cfg.K8sSchedulerConfig(); c != nil {
			return c.Image(), true
		}
	}
	return "", false
}

// argValues is a component's extraArgs as the config resources of machinery 1.14 carry them (a
// list of values per flag; a 1.11 node's resources carried one string).
func argValues(args map[string][]string) map[string]k8s.ArgValues {
	out := make(map[string]k8s.ArgValues, len(args))
	for name, values := range args {
		out[name] = k8s.ArgValues{Values: values}
	}
	return out
}
