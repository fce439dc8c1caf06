package rollout

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"talos-cluster/talosnode/node"
)

// Talos 1.14 no longer decides whether a config change needs a reboot (v1.14.1
// internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go ApplyConfiguration): AUTO is
// always applied as NO_REBOOT, NO_REBOOT accepts every change, REBOOT is refused with
// Unimplemented on a configured node, and Runtime.CanApplyImmediate is gone from the tree. A
// change that needs a boot is stored and takes effect at the next one; neither the answer (its
// mode is NO_REBOOT, its details "Applied configuration without a reboot") nor any resource says
// so (the release notes: "the documentation lists the changes that do").
//
// So on a 1.14+ node the rollout decides itself, so that one `up` still makes a change take
// effect: it reboots (drained, as before) when the stack asks `reboot`, and in `auto` when the
// change reaches past what Talos 1.11 applied in place: the v1alpha1 document differs once the
// fields of 1.11's CanApplyImmediate are taken from the running config (v1.11.5
// internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go). 1.14 applies more in place
// than 1.11 did, so this reboots at times where 1.14 would not have needed it; it never leaves
// waiting a change 1.11 knew needed a boot. Other documents apply in place, as in 1.11.

// bootRelease is the first Talos minor that applies every change without a reboot.
const bootRelease = 14

// AppliesWithoutReboot says whether Talos `release` applies every config change without a
// reboot (1.14+). An unparsable release counts as an old one.
func AppliesWithoutReboot(release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimPrefix(release, "v"), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 1 || (major == 1 && minor >= bootRelease)
}

// needsBoot says whether the change from live to declared reaches past what Talos 1.11 applied in
// place (see above). Either config without a v1alpha1 document counts as needing one.
func needsBoot(live, declared config.Provider) bool {
	if live == nil || declared == nil || live.RawV1Alpha1() == nil || declared.RawV1Alpha1() == nil {
		return true
	}
	current, next := live.RawV1Alpha1(), declared.RawV1Alpha1().DeepCopy()
	next.ConfigDebug = current.ConfigDebug
	next.ClusterConfig = current.ClusterConfig
	if nm, cm := next.MachineConfig, current.MachineConfig; nm != nil && cm != nil {
		nm.MachineCA = cm.MachineCA
		nm.MachineAcceptedCAs = cm.MachineAcceptedCAs
		nm.MachineTime = cm.MachineTime
		nm.MachineCertSANs = cm.MachineCertSANs
		nm.MachineInstall = cm.MachineInstall
		nm.MachineNetwork = cm.MachineNetwork
		nm.MachineSysfs = cm.MachineSysfs
		nm.MachineSysctls = cm.MachineSysctls
		nm.MachineLogging = cm.MachineLogging
		nm.MachineControlPlane = cm.MachineControlPlane
		nm.MachineKubelet = cm.MachineKubelet
		nm.MachineKernel = cm.MachineKernel
		nm.MachineRegistries = cm.MachineRegistries
		nm.MachinePods = cm.MachinePods
		nm.MachineSeccompProfiles = cm.MachineSeccompProfiles
		nm.MachineNodeAnnotations = cm.MachineNodeAnnotations
		nm.MachineNodeLabels = cm.MachineNodeLabels
		nm.MachineNodeTaints = cm.MachineNodeTaints
		if nf, cf := nm.MachineFeatures, cm.MachineFeatures; nf != nil && cf != nil {
			nf.KubernetesTalosAPIAccessConfig = cf.KubernetesTalosAPIAccessConfig
			nf.KubePrismSupport = cf.KubePrismSupport
			nf.HostDNSSupport = cf.HostDNSSupport
			nf.ImageCacheSupport = cf.ImageCacheSupport
			nf.FeatureNodeAddressSortAlgorithm = cf.FeatureNodeAddressSortAlgorithm
		}
	}
	return !reflect.DeepEqual(current, next)
}

// dryRun114 is DryRun on a node that applies every change without a reboot: Talos validates the
// config in AUTO (REBOOT it would refuse), and the answer is REBOOT when the stack asks for one or
// the change needs a boot.
func dryRun114(ctx context.Context, c *client.Client, live node.State, n Node, mode machine.ApplyConfigurationRequest_Mode) (machine.ApplyConfigurationRequest_Mode, error) {
	callCtx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	if _, err := c.ApplyConfiguration(callCtx, &machine.ApplyConfigurationRequest{Data: n.Config, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true}); err != nil {
		return 0, err
	}
	if mode == machine.ApplyConfigurationRequest_REBOOT {
		return machine.ApplyConfigurationRequest_REBOOT, nil
	}
	declared, err := configloader.NewFromBytes(n.Config)
	if err != nil {
		return 0, err
	}
	if needsBoot(live.Config, declared) {
		return machine.ApplyConfigurationRequest_REBOOT, nil
	}
	return machine.ApplyConfigurationRequest_NO_REBOOT, nil
}
