package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// applyConfigured is machined's ApplyConfiguration on a configured node (v1alpha1_server.go): the
// config must pass RuntimeValidate against the running release first, in every mode; then
// AUTO applies in place what CanApplyImmediate allows and reboots otherwise; NO_REBOOT refuses
// what needs a reboot; REBOOT always reboots; STAGED keeps the config for the next boot. TRY is
// applied in place, as the simulator always did, with no rollback timer.
//
// Talos keeps two MachineConfig resources (resources/config/machine_config.go): `v1alpha1`, the
// active config, and `persistent`, the one written to the STATE partition. NO_REBOOT sets both,
// STAGED and REBOOT only `persistent` (ahead of the active one until the next boot), TRY only the
// active one (v1.11.5 v1alpha1_server.go, SetPersistedConfig and SetConfig).
//
// Talos 1.14 drops the judgement (v1.14.1 v1alpha1_server.go ApplyConfiguration): AUTO is always
// NO_REBOOT, NO_REBOOT refuses nothing (a change that needs a reboot takes effect at the next
// one; neither the answer nor a resource says so, and CanApplyImmediate is gone from the tree),
// and REBOOT is refused outside maintenance with Unimplemented.
func (n *Node) applyConfigured(ctx context.Context, req *machine.ApplyConfigurationRequest, act activation) (*machine.ApplyConfigurationResponse, error) {
	n.mu.Lock()
	current := n.cfg
	currentData := n.state.Config
	running := n.state.TalosVersion
	n.mu.Unlock()
	mode := req.GetMode()
	v114 := releaseAtLeast(running, 14)
	if v114 && mode == machine.ApplyConfigurationRequest_REBOOT {
		return nil, status.Error(codes.Unimplemented, "the REBOOT mode is not supported, please use AUTO or NO_REBOOT modes instead")
	}
	if err := runtimeValidate(running, act.cfg); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	details := "Applied configuration with a reboot"
	modeErr := ""
	switch {
	case v114 && (mode == machine.ApplyConfigurationRequest_AUTO || mode == machine.ApplyConfigurationRequest_NO_REBOOT):
		mode = machine.ApplyConfigurationRequest_NO_REBOOT
		details = "Applied configuration without a reboot"
	case mode == machine.ApplyConfigurationRequest_TRY:
		mode = machine.ApplyConfigurationRequest_NO_REBOOT
		details = "Applied configuration without a reboot"
	case mode == machine.ApplyConfigurationRequest_NO_REBOOT:
		if err := canApplyImmediate(current, act.cfg); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		details = "Applied configuration without a reboot"
	case mode == machine.ApplyConfigurationRequest_STAGED:
		details = "Staged configuration to be applied after the next reboot"
	case mode == machine.ApplyConfigurationRequest_AUTO:
		if err := canApplyImmediate(current, act.cfg); err != nil {
			mode = machine.ApplyConfigurationRequest_REBOOT
			modeErr = ": " + err.Error()
		} else {
			mode = machine.ApplyConfigurationRequest_NO_REBOOT
			details = "Applied configuration without a reboot"
		}
	case mode == machine.ApplyConfigurationRequest_REBOOT:
	default:
		return nil, fmt.Errorf("incorrect mode '%s' specified for the apply config call", mode.String())
	}
	if req.GetDryRun() {
		diff, err := configdiff.DiffConfigs(current, act.cfg)
		if err != nil {
			return nil, fmt.Errorf("failed to generate diff: %w", err)
		}
		if diff == "" {
			diff = "No changes."
		}
		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
			Mode:        mode,
			ModeDetails: fmt.Sprintf("Dry run summary:\n%s (skipped in dry-run).\nConfig diff:\n\n%s", details, diff),
		}}}, nil
	}

	if k := n.trust.kubeAtApply(n); k != nil {
		k.Mode = mode.String()
		n.mu.Lock()
		n.state.KubeAtApply = append(n.state.KubeAtApply, *k)
		n.mu.Unlock()
	}
	changed := "changed"
	if string(act.data) == currentData {
		changed = "unchanged"
	}
	count := func(s *State) {
		s.Applies++
		s.ApplyModes = append(s.ApplyModes, req.GetMode().String())
	}
	switch {
	case req.GetMode() == machine.ApplyConfigurationRequest_TRY:
		// Talos sets only the active config: the persisted one stays, for the rollback.
		if err := n.activate(ctx, act, count); err != nil {
			return nil, status.Errorf(codes.Internal, "storing machine config: %v", err)
		}
	case mode == machine.ApplyConfigurationRequest_NO_REBOOT:
		// SetPersistedConfig, then SetConfig: nothing waits for the next boot.
		if err := n.persist(ctx, act, nil); err != nil {
			return nil, status.Errorf(codes.Internal, "storing machine config: %v", err)
		}
		n.mu.Lock()
		n.pending, n.state.Staged = nil, false
		n.mu.Unlock()
		if err := n.activate(ctx, act, count); err != nil {
			return nil, status.Errorf(codes.Internal, "storing machine config: %v", err)
		}
	default: // STAGED, REBOOT: SetPersistedConfig only; active from the next boot
		if err := n.persist(ctx, act, count); err != nil {
			return nil, status.Errorf(codes.Internal, "storing machine config: %v", err)
		}
	}
	n.trust.record(n.address.String(), TimelineApply, mode.String()+" "+changed)
	if mode == machine.ApplyConfigurationRequest_REBOOT {
		n.rebootSequence("", false, "apply")
	}
	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode:        mode,
		ModeDetails: details + modeErr,
	}}}, nil
}

// persist is Talos' SetPersistedConfig: the MachineConfig `persistent`, and the config the next
// boot activates. record adds what the caller counts.
func (n *Node) persist(ctx context.Context, act activation, record func(*State)) error {
	if err := put(ctx, n.cosi, newMachineConfig(act.cfg, configres.PersistentID)); err != nil {
		return err
	}
	n.mu.Lock()
	n.pending, n.state.Staged = &act, true
	if record != nil {
		record(&n.state)
	}
	n.mu.Unlock()
	return nil
}

// canApplyImmediate is Talos 1.11's Runtime.CanApplyImmediate: the v1alpha1 documents must be
// equal once the fields machined applies at runtime are copied from the current config; other
// documents always apply immediately.
func canApplyImmediate(currentCfg, newCfg config.Provider) error {
	if currentCfg == nil {
		return errors.New("no current config")
	}
	current := currentCfg.RawV1Alpha1()
	if current == nil {
		return errors.New("current config is not v1alpha1")
	}
	next := newCfg.RawV1Alpha1()
	if next == nil {
		return errors.New("new config is not v1alpha1")
	}
	next = next.DeepCopy()
	next.ConfigDebug = current.ConfigDebug
	next.ClusterConfig = current.ClusterConfig
	if next.MachineConfig != nil && current.MachineConfig != nil {
		nm, cm := next.MachineConfig, current.MachineConfig
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
		if nm.MachineFeatures != nil && cm.MachineFeatures != nil {
			nf, cf := nm.MachineFeatures, cm.MachineFeatures
			nf.KubernetesTalosAPIAccessConfig = cf.KubernetesTalosAPIAccessConfig
			nf.KubePrismSupport = cf.KubePrismSupport
			nf.HostDNSSupport = cf.HostDNSSupport
			nf.ImageCacheSupport = cf.ImageCacheSupport
			nf.FeatureNodeAddressSortAlgorithm = cf.FeatureNodeAddressSortAlgorithm
		}
	}
	if !reflect.DeepEqual(current, next) {
		diff, err := configdiff.DiffConfigs(container.NewV1Alpha1(current), container.NewV1Alpha1(next))
		if err != nil {
			return fmt.Errorf("error calculating diff: %w", err)
		}
		return fmt.Errorf("this config change can't be applied in immediate mode\ndiff:\n%s", diff)
	}
	return nil
}
