package node

import (
	"context"

	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Talos' role checks, as v1.11.5 makes them on a configured node: apid takes the caller's roles
// from the Organization (O=) of its client certificate (pkg/grpc/middleware/authz/injector.go,
// mode Enabled; a certificate with os:impersonator may name the roles in the `talos-role`
// metadata instead), and machined's authorizer lets a call through when the caller holds one of
// the roles its method allows (internal/app/machined/pkg/system/services/machined.go, the `rules`
// map; a method it does not name needs os:admin). Otherwise the call ends before its handler
// with PermissionDenied "not authorized" (authz.ErrNotAuthorized). COSI reads of Sensitive types
// are checked again per type by the access policy (resources.go).
//
// In maintenance mode there is no apid and no authorizer: every caller is os:reader (the
// maintenance service's injector, ReadOnlyWithAdminOnSiderolink, without SideroLink) and each
// handler refuses what maintenance does not serve.

// The role sets machined's rules use.
var (
	readers     = role.MakeSet(role.Admin, role.Operator, role.Reader)
	etcdReaders = role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup)
	etcdBackups = role.MakeSet(role.Admin, role.Operator, role.EtcdBackup)
	operators   = role.MakeSet(role.Admin, role.Operator)
	admins      = role.MakeSet(role.Admin)
)

// methodRoles maps a full gRPC method name to the roles allowed to call it (Talos v1.11.5).
// GenerateConfiguration (admins in 1.11.5) is left out: machinery 1.14's MachineService no longer
// has it, so the simulator cannot serve it and a call is Unimplemented whatever the role.
var methodRoles = func() map[string]role.Set {
	rules := map[string]role.Set{}
	add := func(service string, roles role.Set, methods ...string) {
		for _, m := range methods {
			rules["/"+service+"/"+m] = roles
		}
	}
	add("cluster.ClusterService", readers, "HealthCheck")
	add("inspect.InspectService", readers, "ControllerRuntimeDependencies")
	add("machine.MachineService", readers,
		"CPUInfo", "CPUFreqStats", "Containers", "DiskStats", "DiskUsage", "Dmesg", "Events", "Hostname",
		"ImageList", "List", "LoadAvg", "Logs", "LogsContainers", "Memory", "Mounts", "NetworkDeviceStats",
		"Netstat", "Processes", "ServiceList", "Stats", "SystemStat", "Version")
	add("machine.MachineService", etcdReaders, "EtcdAlarmList", "EtcdMemberList", "EtcdStatus")
	add("machine.MachineService", etcdBackups, "EtcdSnapshot")
	add("machine.MachineService", operators,
		"EtcdAlarmDisarm", "EtcdDefragment", "ImagePull", "PacketCapture", "Reboot", "Restart",
		"ServiceRestart", "ServiceStart", "ServiceStop", "Shutdown")
	add("machine.MachineService", admins,
		"ApplyConfiguration", "Bootstrap", "Copy", "EtcdForfeitLeadership", "EtcdLeaveCluster", "EtcdRecover",
		"EtcdRemoveMemberByID", "EtcdDowngradeCancel", "EtcdDowngradeEnable", "EtcdDowngradeValidate",
		"GenerateClientConfiguration", "Kubeconfig", "MetaWrite", "MetaDelete", "Read",
		"Reset", "Rollback", "Upgrade")
	// COSI: reads for readers, then the access policy decides per type; writes for admins (and
	// then refused by the access policy all the same).
	// Talos 1.13+ (v1.14.1 internal/app/machined/pkg/system/services/machined.go); LifecycleService's
	// Install and Upgrade are for admins, the default.
	add("machine.ImageService", readers, "List")
	add("machine.ImageService", operators, "Pull")
	add("cosi.resource.State", readers, "Get", "List", "Watch")
	add("cosi.resource.State", admins, "Create", "Destroy", "Update")
	add("storage.StorageService", readers, "Disks")
	add("storage.StorageService", admins, "BlockDeviceWipe")
	add("time.TimeService", readers, "Time", "TimeCheck")
	return rules
}()

// errNotAuthorized is Talos' authz.ErrNotAuthorized, what every refused role check answers.
var errNotAuthorized = status.Error(codes.PermissionDenied, "not authorized")

type rolesKey struct{}

// callerRoles are the roles the interceptor found for this call.
func callerRoles(ctx context.Context) role.Set {
	if roles, ok := ctx.Value(rolesKey{}).(role.Set); ok {
		return roles
	}
	return role.Zero
}

// authorizeCall is machined's authorizer for one call of method (the interceptor on its socket,
// authz.Injector in mode MetadataOnly, then the rules): the caller's roles come in the
// `talos-role` metadata apid set (apid.go); the context carries them after it.
func (n *Node) authorizeCall(ctx context.Context, method string) (context.Context, error) {
	n.mu.Lock()
	configured := n.osCACert != nil
	n.mu.Unlock()
	if !configured {
		return context.WithValue(ctx, rolesKey{}, role.MakeSet(role.Reader)), nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	roles, _ := role.Parse(md.Get(constants.APIAuthzRoleMetadataKey))
	allowed, ok := methodRoles[method]
	if !ok {
		allowed = admins
	}
	if !allowed.IncludesAny(roles) {
		return ctx, errNotAuthorized
	}
	return context.WithValue(ctx, rolesKey{}, roles), nil
}

// certificateRoles is apid's injector in mode Enabled: the roles named by the Organization of
// the caller's certificate; a certificate with os:impersonator (another apid, or a user given
// that role) may name the roles in the `talos-role` metadata instead.
func certificateRoles(ctx context.Context) (role.Set, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return role.Zero, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		// A connection made in maintenance mode, before the node required client certificates.
		return role.Zero, status.Error(codes.Unauthenticated, "client certificate required")
	}
	roles, _ := role.Parse(info.State.PeerCertificates[0].Subject.Organization)
	if roles.Includes(role.Impersonator) {
		md, _ := metadata.FromIncomingContext(ctx)
		if asked := md.Get(constants.APIAuthzRoleMetadataKey); len(asked) > 0 {
			roles, _ = role.Parse(asked)
		}
	}
	return roles, nil
}

func (n *Node) unaryAuthz(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := n.authorizeCall(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (n *Node) streamAuthz(srv any, stream grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := n.authorizeCall(stream.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, rolesStream{stream, ctx})
}

// rolesStream is a server stream whose context carries the caller's roles.
type rolesStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s rolesStream) Context() context.Context { return s.ctx }
