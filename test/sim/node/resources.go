package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/meta"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/cosi-project/runtime/pkg/state/registry"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	etcdres "github.com/siderolabs/talos/pkg/machinery/resources/etcd"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// newResourceState builds a node's COSI state as machined does: the namespaces and resource
// definitions first (talosctl get resolves a type through them, and the access policy refuses
// types without one), then what the machine shows from boot.
func newResourceState(schematicID string, links []link) (state.State, error) {
	ctx := context.Background()
	st := state.WrapCore(namespaced.NewState(inmem.Build))
	namespaces := registry.NewNamespaceRegistry(st)
	if err := namespaces.RegisterDefault(ctx); err != nil {
		return nil, err
	}
	// Descriptions as Talos registers them (internal/app/machined/pkg/runtime/v1alpha2).
	for _, ns := range []struct{ name, description string }{
		{configres.NamespaceName, "Talos node configuration."},
		{etcdres.NamespaceName, "etcd resources."},
		{k8s.NamespaceName, "Kubernetes all node types resources."},
		{k8s.ControlPlaneNamespaceName, "Kubernetes control plane resources."},
		{network.NamespaceName, "Networking resources."},
		{runtime.NamespaceName, "Talos v1alpha1 subsystems glue resources."},
	} {
		if err := namespaces.Register(ctx, ns.name, ns.description); err != nil {
			return nil, err
		}
	}
	definitions := registry.NewResourceRegistry(st)
	if err := definitions.RegisterDefault(ctx); err != nil {
		return nil, err
	}
	for _, r := range []meta.ResourceWithRD{
		&configres.MachineConfig{},
		&network.AddressStatus{},
		&network.LinkStatus{},
		&runtime.ExtensionStatus{},
		&runtime.MachineStatus{},
		&v1alpha1.Service{},
		&etcdres.Member{},
		asTalos111{&k8s.APIServerConfig{}},
		&k8s.ControllerManagerConfig{},
		&k8s.SchedulerConfig{},
		&k8s.BootstrapManifestsConfig{},
		&k8s.Manifest{},
		&k8s.StaticPodStatus{},
		&k8s.StaticPod{},
		&k8s.KubeletSpec{},
		&k8s.Nodename{},
		asTalos111{&k8s.KubeletConfig{}},
		&block.VolumeStatus{},
		&runtime.Diagnostic{},
	} {
		if err := definitions.Register(ctx, r); err != nil {
			return nil, err
		}
	}

	// Talos shows the schematic as a virtual extension named "schematic" whose version is the id.
	if err := st.Create(ctx, schematicExtension(schematicID)); err != nil {
		return nil, err
	}
	if err := st.Create(ctx, machineStatus(runtime.MachineStageMaintenance)); err != nil {
		return nil, err
	}
	for _, l := range links {
		res := network.NewLinkStatus(network.NamespaceName, l.name)
		*res.TypedSpec() = l.spec
		if err := st.Create(ctx, res); err != nil {
			return nil, fmt.Errorf("link %s: %w", l.name, err)
		}
	}
	return st, nil
}

// schematicExtension is the virtual extension the Image Factory adds to every image it builds. Its
// resource id is the layer's index, as for any extension; only the name says it is the schematic.
func schematicExtension(id string) *runtime.ExtensionStatus {
	res := runtime.NewExtensionStatus(runtime.NamespaceName, "0")
	res.TypedSpec().Metadata = extensions.Metadata{Name: "schematic", Version: id, Description: "Image Factory schematic"}
	return res
}

// machineStatus is what machined's MachineStatusController reports. Talos runs readiness checks
// (time, network, services, static pods, node ready) only in the booting and running stages, so
// maintenance is ready with no unmet conditions; a configured node here is running and ready, as
// the simulator models no service that could be down.
func machineStatus(stage runtime.MachineStage) *runtime.MachineStatus {
	res := runtime.NewMachineStatus()
	res.TypedSpec().Stage = stage
	res.TypedSpec().Status.Ready = true
	return res
}

// ephemeralVolume is the EPHEMERAL partition's VolumeStatus once the machine runs installed:
// Talos' layout on the system disk (Disks: 100 GiB), what is left after the boot, META and STATE
// partitions (imager/quirks PartitionSizes) and the GPT. `talosctl health` checks its size
// (pkg/cluster/check/nodes.go AllNodesDiskSizes).
func ephemeralVolume() *block.VolumeStatus {
	ps := quirks.New("").PartitionSizes()
	res := block.NewVolumeStatus(block.NamespaceName, constants.EphemeralPartitionLabel)
	spec := res.TypedSpec()
	spec.Phase = block.VolumePhaseReady
	spec.Type = block.VolumeTypePartition
	spec.Location = "/dev/sda6"
	spec.ParentLocation = "/dev/sda"
	spec.MountLocation = "/var"
	spec.Filesystem = block.FilesystemTypeXFS
	spec.SetSize(systemDiskSize - ps.UKIEFISize() - ps.METASize() - ps.StateSize() - 1<<20)
	return res
}

// put creates the resource or replaces the stored one, as a controller's output write does.
func put(ctx context.Context, st state.State, res resource.Resource) error {
	existing, err := st.Get(ctx, res.Metadata())
	if state.IsNotFoundError(err) {
		return st.Create(ctx, res)
	}
	if err != nil {
		return err
	}
	res.Metadata().SetVersion(existing.Metadata().Version())
	return st.Update(ctx, res)
}

// asTalos111 is a resource type as Talos 1.11 defines it: not Sensitive. machinery 1.13+ marks
// APIServerConfig and KubeletConfig Sensitive (resources/k8s/apiserver_config.go,
// kubelet_config.go), so only os:admin reads them there; a 1.11 node lets os:reader read them.
type asTalos111 struct{ meta.ResourceWithRD }

func (r asTalos111) ResourceDefinition() meta.ResourceDefinitionSpec {
	spec := r.ResourceWithRD.ResourceDefinition()
	spec.Sensitivity = meta.NonSensitive
	return spec
}

// accessPolicy is Talos' resources.AccessPolicy (internal/app/resources/access.go), which guards the COSI API in maintenance mode
// as once configured: reads only; a type needs a resource definition and its namespace must
// exist; Sensitive types (MachineConfig) need os:admin. Maintenance callers are readers, so
// there `talosctl get links --insecure` works and `talosctl get machineconfig --insecure` does not.
func (n *Node) accessPolicy(ctx context.Context, access state.Access) error {
	if !access.Verb.Readonly() {
		return status.Error(codes.PermissionDenied, "write access is not allowed")
	}
	rd, err := safe.StateGet[*meta.ResourceDefinition](ctx, n.cosi, resource.NewMetadata(meta.NamespaceName, meta.ResourceDefinitionType, strings.ToLower(access.ResourceType), resource.VersionUndefined))
	if state.IsNotFoundError(err) {
		return status.Errorf(codes.PermissionDenied, "resource type %q is not supported", access.ResourceType)
	}
	if err != nil {
		return err
	}
	switch rd.TypedSpec().Sensitivity {
	case meta.Sensitive:
		// The roles the interceptor (authz.go) found: os:reader in maintenance.
		if !callerRoles(ctx).Includes(role.Admin) {
			return errNotAuthorized
		}
	case meta.NonSensitive:
	default:
		return fmt.Errorf("unexpected sensitivity %q", rd.TypedSpec().Sensitivity)
	}
	_, err = safe.StateGet[*meta.Namespace](ctx, n.cosi, resource.NewMetadata(meta.NamespaceName, meta.NamespaceType, access.ResourceNamespace, resource.VersionUndefined))
	if state.IsNotFoundError(err) {
		return status.Errorf(codes.PermissionDenied, "namespace %q is not supported", access.ResourceNamespace)
	}
	return err
}
