package node

import (
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

// The simulated nodes are Talos 1.11 nodes, which take a v1alpha1 config and read its cluster
// and kubelet sections directly. machinery 1.14 moved the accessors for those sections
// (cfg.Cluster().Name(), IssuingCA(), Network(), APIServer(); cfg.Machine().Kubelet(),
// NodeLabels(), NodeTaints()) into K8s* documents that return nil where the old accessors returned
// an empty section, and that merge in defaults a 1.11 node adds elsewhere (the control-plane
// label and taint). These helpers read the sections as machinery 1.11 did.

// clusterSection is the config's cluster section, empty when it has none (as cfg.Cluster() was).
func clusterSection(cfg config.Provider) *v1alpha1.ClusterConfig {
	if raw := cfg.RawV1Alpha1(); raw != nil && raw.ClusterConfig != nil {
		return raw.ClusterConfig
	}
	return &v1alpha1.ClusterConfig{}
}

// machineSection is the config's machine section, empty when it has none.
func machineSection(cfg config.Provider) *v1alpha1.MachineConfig {
	if raw := cfg.RawV1Alpha1(); raw != nil && raw.MachineConfig != nil {
		return raw.MachineConfig
	}
	return &v1alpha1.MachineConfig{}
}

// kubeletSection is machine.kubelet, empty when unset (as cfg.Machine().Kubelet() was).
func kubeletSection(cfg config.Provider) *v1alpha1.KubeletConfig {
	if k := machineSection(cfg).MachineKubelet; k != nil {
		return k
	}
	return &v1alpha1.KubeletConfig{}
}

// serviceCIDRs is cluster.network.serviceSubnets as written, Talos' default when unset
// (machinery 1.11's ClusterNetwork().ServiceCIDRs(); 1.14's returns parsed prefixes).
func serviceCIDRs(cfg config.Provider) []string {
	if n := clusterSection(cfg).ClusterNetwork; n != nil && len(n.ServiceSubnet) > 0 {
		return n.ServiceSubnet
	}
	return []string{constants.DefaultIPv4ServiceCIDR}
}

// podCIDRs is cluster.network.podSubnets as written, Talos' default when unset.
func podCIDRs(cfg config.Provider) []string {
	if n := clusterSection(cfg).ClusterNetwork; n != nil && len(n.PodSubnet) > 0 {
		return n.PodSubnet
	}
	return []string{constants.DefaultIPv4PodCIDR}
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
