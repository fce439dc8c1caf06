// Package node simulates the machine API of one Talos node: maintenance mode with insecure TLS
// until a configuration is applied, then mutual TLS with the machine CA from that configuration.
package node

import (
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cosiapi "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/state"
	cosiserver "github.com/cosi-project/runtime/pkg/state/protobuf/server"
	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/api/storage"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// APIPort is where apid listens on every Talos node.
const APIPort = 50000

// State is what tests and the control endpoint see of a node.
type State struct {
	Address         string   `json:"address"`
	Up              bool     `json:"up"`
	Configured      bool     `json:"configured"`
	Role            string   `json:"role,omitempty"`
	Hostname        string   `json:"hostname,omitempty"`
	ClusterName     string   `json:"clusterName,omitempty"`
	InstallImage    string   `json:"installImage,omitempty"`
	TalosVersion    string   `json:"talosVersion"`
	Applies         int      `json:"applies"`
	ApplyModes      []string `json:"applyModes"`
	Bootstrapped    bool     `json:"bootstrapped"`
	BootstrapCalls  int      `json:"bootstrapCalls"`
	KubeconfigCalls int      `json:"kubeconfigCalls"`
	// Links are the names of the node's network links, as `talosctl get links` lists them.
	Links []string `json:"links"`
	// VIP is the shared address of the last applied config's machine.network.interfaces, if any.
	VIP *VIPStatus `json:"vip,omitempty"`
	// KubernetesNode is this machine's Node object in its cluster's API server, once registered.
	KubernetesNode *KubernetesNode `json:"kubernetesNode,omitempty"`
	// Config is the last applied machine configuration, as sent.
	Config string `json:"config,omitempty"`
	// BootID is the current boot's /proc/sys/kernel/random/boot_id (new at every boot).
	BootID string `json:"bootId"`
	// Stage is MachineStatus' stage: maintenance, booting, running, upgrading, rebooting.
	Stage string `json:"stage"`
	// Schematic is the Image Factory schematic id of the booted image.
	Schematic string `json:"schematic"`
	// Staged is true while a staged (or reboot-pending) config waits for the next boot.
	Staged bool `json:"staged"`
	// BootFails is the fault: an upgrade's new image fails to boot and the node rolls back.
	BootFails bool `json:"bootFails"`
	// EtcdHealthy is false while the etcd member fault is set.
	EtcdHealthy bool `json:"etcdHealthy"`
	// KubeletNeverReady and StaticPodFails are the faults of SetKubeletNeverReady and
	// SetStaticPodFails (the components whose pod never turns Ready, sorted).
	KubeletNeverReady bool     `json:"kubeletNeverReady"`
	StaticPodFails    []string `json:"staticPodFails"`
	// NodeAddress is how the machine's address reaches its first link, or why it does not.
	NodeAddress NodeAddress `json:"nodeAddress"`
	// KubeAtApply is, per config apply on the configured machine (not dry runs), its Node and
	// the pods a drain evicts as the real API server showed them then; empty without a real API
	// server.
	KubeAtApply []KubeAtApply `json:"kubeAtApply,omitempty"`
	// KubeAtReboot is the same per Reboot call (Mode is the reboot mode): a client that upgrades
	// through LifecycleService drains the Node itself before it asks for the reboot.
	KubeAtReboot []KubeAtApply `json:"kubeAtReboot,omitempty"`
}

// Node is one simulated machine. Its state survives Stop/Start, as a powered-off disk would.
type Node struct {
	machine.UnimplementedMachineServiceServer
	storage.UnimplementedStorageServiceServer

	address net.IP
	port    int

	trust *Trust
	links []link
	// cosi holds the resources talosctl get (and our drift checks) read: the active
	// MachineConfig, the ExtensionStatus of the schematic the node booted from, the LinkStatuses
	// and the AddressStatus of a VIP this node holds; plus the definitions of those types.
	cosi state.State

	mu        sync.Mutex
	state     State
	cfg       config.Provider
	osCACert  *stdx509.Certificate
	clusterCA *talosx509.CertificateAuthority
	endpoint  string
	apiCert   *tls.Certificate
	maintCert tls.Certificate
	lis       net.Listener
	srv       *machineAPI

	// The machine's life: powered (Start/Stop), a reboot in progress, the running sequence,
	// this boot's id and event stream.
	rebootTime time.Duration
	powered    bool
	rebooting  bool
	sequence   string
	bootID     string
	events     *eventLog
	// pending is the persisted config that becomes active at the next boot (staged, or applied
	// with a reboot); installed is the image an upgrade wrote for the next boot.
	pending   *activation
	installed *bootImage
	// images are what ImageService.Pull put in containerd's store (Talos 1.13+); installing is
	// LifecycleService's lock (one install or upgrade at a time).
	images     map[string]bool
	installing bool
	// Faults for tests.
	bootFails     bool
	etcdUnhealthy bool
	upgradeAborts bool
	// etcdStarted is true once this control plane's etcd member ran (etcd keeps its name then).
	etcdStarted bool
	// servicesStopped: an upgrade stopped etcd, kubelet and the rest before its reboot.
	servicesStopped bool
	// etcdJoin is how long the etcd member takes to rejoin after a boot; etcdJoining is true
	// meanwhile.
	etcdJoin    time.Duration
	etcdJoining bool
	// Membership (members.go): etcdLeft, etcdRemoved as member shows them; etcdPromote is how long a
	// learner takes to catch up (WithEtcdPromoteTime); etcdJoins counts the MemberAdds of this
	// machine; drainTimeout bounds a graceful reset's drain (WithDrainTimeout).
	etcdLeft, etcdRemoved bool
	etcdPromote           time.Duration
	etcdJoins             int
	etcdMemberID          uint64
	drainTimeout          time.Duration
	// Recovery (recover.go): the snapshot EtcdRecover uploaded to /var/lib/etcd.snapshot (nil:
	// none), the leftovers a failed restore wrote into /var/lib/etcd, and the etcd service's
	// failure ("" unless its pre-state failed); all on EPHEMERAL.
	recoverySnapshot []byte
	etcdDataLeft     bool
	etcdFailed       string
	// stagedInstall: a staged upgrade installs at the next boot and reboots once more.
	stagedInstall bool
	bootedAt      time.Time
	// pods are the control plane's static pods and the kubelet (staticpods.go); booting is set
	// while boot activates the persisted config.
	pods    *podModel
	booting bool
}

// Option changes how New builds a node.
type Option func(*options)

type options struct {
	links        []string
	rebootTime   time.Duration
	staticPodLag time.Duration
	etcdJoinTime time.Duration
	promoteTime  time.Duration
	drainTimeout time.Duration
}

// DefaultLinks is what a node has unless WithLinks says otherwise: one virtio NIC with the
// predictable name Talos (since 1.5) gives it on metal. There is no eth0.
var DefaultLinks = []string{"enp1s0"}

// WithLinks names the node's network links, in bus order.
func WithLinks(names ...string) Option {
	return func(o *options) { o.links = slices.Clone(names) }
}

// New makes a node in maintenance mode that runs talosVersion, booted from the image of the
// given schematic id. Nodes made with the same Trust form one simulation, in the order made.
func New(address string, port int, talosVersion, schematicID string, trust *Trust, opts ...Option) (*Node, error) {
	o := options{links: DefaultLinks, rebootTime: DefaultRebootTime, staticPodLag: DefaultStaticPodLag, drainTimeout: DefaultDrainTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	ip := net.ParseIP(address)
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil, fmt.Errorf("node address %q must be a loopback IPv4 address", address)
	}
	links, err := newLinks(ip, o.links)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", address, err)
	}
	cert, err := maintenanceCert(ip)
	if err != nil {
		return nil, err
	}
	cosi, err := newResourceState(schematicID, links)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", address, err)
	}
	n := &Node{
		cosi:      cosi,
		trust:     trust,
		links:     links,
		address:   ip,
		port:      port,
		maintCert: cert,
		state: State{Address: address, TalosVersion: talosVersion, ApplyModes: []string{}, Links: linkNames(links),
			Schematic: schematicID, Stage: runtime.MachineStageMaintenance.String(), EtcdHealthy: true,
			NodeAddress: NodeAddress{Link: links[0].name, Source: "dhcp"}},
		rebootTime:   o.rebootTime,
		etcdJoin:     o.etcdJoinTime,
		etcdPromote:  o.promoteTime,
		drainTimeout: o.drainTimeout,
		events:       newEventLog(),
		pods:         newPodModel(o.staticPodLag),
	}
	trust.join(n)
	return n, nil
}

// Addr is host:port of the node's API.
func (n *Node) Addr() string { return net.JoinHostPort(n.address.String(), strconv.Itoa(n.port)) }

// newServer is the machine's API: apid on the network (apid.go), machined's MachineService,
// storage and COSI behind it.
func (n *Node) newServer() (net.Listener, *machineAPI, error) {
	lis, err := net.Listen("tcp", n.Addr())
	if err != nil {
		return nil, nil, err
	}
	return lis, n.newMachineAPI(func(srv *grpc.Server) {
		machine.RegisterMachineServiceServer(srv, n)
		storage.RegisterStorageServiceServer(srv, n)
		// Talos 1.13+ (lifecycleapi.go); older releases answer Unimplemented from them.
		machine.RegisterImageServiceServer(srv, imageService{n: n})
		machine.RegisterLifecycleServiceServer(srv, lifecycleService{n: n})
		// As on Talos (maintenance and apid alike), the API reads resources through an access policy.
		cosiapi.RegisterStateServer(srv, cosiserver.NewState(state.WrapCore(state.Filter(n.cosi, n.accessPolicy))))
	}), nil
}

// State returns a copy of what the node has seen.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.state
	s.ApplyModes = slices.Clone(n.state.ApplyModes)
	s.KubeAtApply = slices.Clone(n.state.KubeAtApply)
	s.KubeAtReboot = slices.Clone(n.state.KubeAtReboot)
	s.StaticPodFails = append([]string{}, n.state.StaticPodFails...)
	return s
}

// tlsConfig picks the handshake by mode: maintenance serves anyone (clients skip verification),
// a configured node demands a client certificate signed by its machine CA.
func (n *Node) tlsConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if n.osCACert == nil {
		cfg.Certificates = []tls.Certificate{n.maintCert}
		cfg.ClientAuth = tls.NoClientCert
		return cfg, nil
	}
	if n.apiCert == nil {
		// A worker waits for a control plane of its cluster to sign its API certificate.
		ca, ok := n.trust.signer(n.osCACert)
		if !ok {
			return nil, errors.New("API certificate not issued yet: no control plane of this cluster is configured")
		}
		cert, err := serverCert(ca, n.address, n.state.Hostname)
		if err != nil {
			return nil, err
		}
		n.apiCert = &cert
	}
	pool := stdx509.NewCertPool()
	pool.AddCert(n.osCACert)
	cfg.Certificates = []tls.Certificate{*n.apiCert}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = pool
	return cfg, nil
}

// ApplyConfiguration validates and stores the configuration; the first one ends maintenance mode.
func (n *Node) ApplyConfiguration(ctx context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	n.mu.Lock()
	inMaintenance := n.osCACert == nil
	n.mu.Unlock()
	if inMaintenance {
		// Talos' maintenance service installs and reboots into the configuration: it takes only
		// the modes that allow a reboot, and says so before it reads the configuration.
		switch req.GetMode() {
		case machine.ApplyConfigurationRequest_AUTO, machine.ApplyConfigurationRequest_REBOOT, machine.ApplyConfigurationRequest_TRY:
		default:
			return nil, status.Errorf(codes.Unimplemented, "apply configuration --mode='%s' is not supported in maintenance mode",
				strings.ReplaceAll(strings.ToLower(req.GetMode().String()), "_", "-"))
		}
	}
	act, err := n.validate(req.GetData())
	if err != nil {
		return nil, err
	}

	if !inMaintenance {
		return n.applyConfigured(ctx, req, act)
	}
	// In maintenance Talos answers with no mode (it installs, then reboots); the simulator
	// applies in place and records the mode as asked.
	reply := &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{}}}
	if req.GetDryRun() {
		reply.Messages[0].ModeDetails = "Dry run summary:\nNode is running in maintenance mode and does not have a config yet."
		return reply, nil
	}
	if err := n.activate(ctx, act, func(s *State) {
		s.Applies++
		s.ApplyModes = append(s.ApplyModes, req.GetMode().String())
	}); err != nil {
		return nil, status.Errorf(codes.Internal, "storing machine config: %v", err)
	}
	return reply, nil
}

// activation is a validated machine configuration with what the node derives from it.
type activation struct {
	data      []byte
	cfg       config.Provider
	osCACert  *stdx509.Certificate
	osCA      *talosx509.CertificateAuthority // control planes only: workers carry no key
	clusterCA *talosx509.CertificateAuthority // control planes only
	hostname  string
}

// validate loads a machine configuration as Talos does before it accepts one. Its errors are
// InvalidArgument, the one error the talos provider does not retry.
func (n *Node) validate(data []byte) (activation, error) {
	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return activation{}, status.Errorf(codes.InvalidArgument, "configuration validation failed: %v", err)
	}
	if cfg.Machine() == nil || cfg.Cluster() == nil {
		return activation{}, status.Error(codes.InvalidArgument, "configuration validation failed: not a v1alpha1 machine configuration")
	}
	issuing := cfg.Machine().Security().IssuingCA()
	if issuing == nil {
		return activation{}, status.Error(codes.InvalidArgument, "configuration validation failed: machine.ca is missing")
	}
	act := activation{data: data, cfg: cfg}
	if act.osCACert, err = parseCertificate(issuing.Crt); err != nil {
		return activation{}, status.Errorf(codes.InvalidArgument, "machine.ca.crt: %v", err)
	}
	if clusterCACert(cfg) == nil {
		return activation{}, status.Error(codes.InvalidArgument, "configuration validation failed: cluster.ca is missing")
	}
	if cfg.Machine().Type() == talosmachine.TypeControlPlane {
		if act.osCA, err = talosx509.NewCertificateAuthorityFromCertificateAndKey(issuing); err != nil {
			return activation{}, status.Errorf(codes.InvalidArgument, "machine.ca: %v", err)
		}
		if act.clusterCA, err = talosx509.NewCertificateAuthorityFromCertificateAndKey(clusterIssuingCA(cfg)); err != nil {
			return activation{}, status.Errorf(codes.InvalidArgument, "cluster.ca: %v", err)
		}
	}
	act.hostname = hostname(cfg)
	if act.hostname == "" {
		act.hostname = "talos-" + n.address.String()
	}
	return act, nil
}

// hostname is the configured hostname: a HostnameConfig document (Talos 1.12 configs) or the
// v1alpha1 machine.network.hostname. It reads both without the accessors that moved between
// machinery 1.11 and 1.12, so this package builds with either (the talosnode provider's tests
// build it with 1.12).
func hostname(cfg config.Provider) string {
	for _, doc := range cfg.Documents() {
		if h, ok := doc.(interface{ Hostname() string }); ok && doc.Kind() == "HostnameConfig" {
			return h.Hostname()
		}
	}
	if raw := cfg.RawV1Alpha1(); raw != nil && raw.MachineConfig != nil && raw.MachineConfig.MachineNetwork != nil {
		return raw.MachineConfig.MachineNetwork.NetworkHostname
	}
	return ""
}

// activate makes a validated configuration the node's active one: the MachineConfig and
// MachineStatus resources, the TLS identity and the state; record adds what the caller counts.
// Then Talos' network and node-apply controllers react to it: VIP, Node labels, taints.
func (n *Node) activate(ctx context.Context, act activation, record func(*State)) error {
	if act.osCA != nil {
		n.trust.learn(act.osCA)
	}
	n.mu.Lock()
	if err := put(ctx, n.cosi, newMachineConfig(act.cfg, configres.ActiveID)); err != nil {
		n.mu.Unlock()
		return err
	}
	firstConfig := n.cfg == nil
	// The API certificate is issued at the next handshake, signed by the (new) machine CA.
	n.osCACert, n.clusterCA, n.apiCert = act.osCACert, act.clusterCA, nil
	if ep := clusterEndpoint(act.cfg); ep != nil {
		n.endpoint = ep.String()
	}
	n.cfg = act.cfg
	n.state.Configured = true
	n.state.Role = act.cfg.Machine().Type().String()
	n.state.Hostname = act.hostname
	n.state.ClusterName = clusterName(act.cfg)
	n.state.InstallImage = act.cfg.Machine().Install().Image()
	n.state.Config = string(act.data)
	if record != nil {
		record(&n.state)
	}
	booting := n.booting
	n.mu.Unlock()
	if !booting {
		n.podsConfigured(ctx, act.cfg, firstConfig)
	}
	if firstConfig {
		// The first config ends maintenance mode (Talos would install and reboot into it).
		n.setStage(ctx, runtime.MachineStageRunning, true)
	}
	if lost := n.addressLost(); lost != "" {
		n.dropOffNetwork(lost)
	}
	n.trust.settle()
	return nil
}

// Bootstrap is machined's (v1.11.5 internal/app/machined/internal/server/v1alpha1/
// v1alpha1_server.go Bootstrap): refused in maintenance, on a worker and while etcd's data
// directory holds anything (AlreadyExists: the member ran, or a failed restore left files); then
// the etcd service restarts in bootstrap mode (services/etcd.go BootstrapEtcd), restoring the
// uploaded snapshot first with recover_etcd (recover.go). A failed restore does not fail the call:
// the etcd service fails its pre-state, as Talos' service runner reports it.
func (n *Node) Bootstrap(ctx context.Context, req *machine.BootstrapRequest) (*machine.BootstrapResponse, error) {
	n.mu.Lock()
	n.state.BootstrapCalls++
	var err error
	switch {
	case !n.state.Configured:
		err = status.Error(codes.Unimplemented, "bootstrap is not available in maintenance mode")
	case n.state.Role != talosmachine.TypeControlPlane.String():
		err = status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node")
	case n.state.Bootstrapped || n.etcdStarted || n.etcdDataLeft:
		err = status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}
	if err != nil {
		n.mu.Unlock()
		return nil, err
	}
	n.etcdFailed = ""
	snapshot := n.recoverySnapshot
	n.mu.Unlock()
	detail := ""
	var restored *recovery
	if req.GetRecoverEtcd() {
		restored, detail, err = n.restoreSnapshot(snapshot, req.GetRecoverSkipHashCheck())
		if err != nil {
			n.trust.record(n.address.String(), TimelineBootstrap, "recover failed: "+err.Error())
			n.trust.settle()
			return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
		}
	}
	n.mu.Lock()
	n.state.Bootstrapped = true
	n.mu.Unlock()
	if restored != nil {
		n.trust.recovered(n.member().cluster, restored)
		n.trust.record(n.address.String(), TimelineBootstrap, detail)
	}
	// With etcd and the API server up, VIPs are elected and kubelets register.
	n.trust.settle()
	return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
}

// Kubeconfig streams an admin kubeconfig signed by the cluster CA, from a control plane.
func (n *Node) Kubeconfig(_ *emptypb.Empty, stream grpc.ServerStreamingServer[common.Data]) error {
	n.mu.Lock()
	n.state.KubeconfigCalls++
	clusterCA, clusterName, endpoint := n.clusterCA, n.state.ClusterName, n.endpoint
	n.mu.Unlock()
	if clusterCA == nil {
		return status.Error(codes.FailedPrecondition, "kubeconfig is only available on a configured control plane node")
	}
	certPEM, keyPEM, err := kubeAdminCert(clusterCA)
	if err != nil {
		return status.Errorf(codes.Internal, "issuing admin certificate: %v", err)
	}
	archive, err := kubeconfigArchive(clusterName, endpoint, clusterCA.CrtPEM, certPEM, keyPEM)
	if err != nil {
		return status.Errorf(codes.Internal, "packing kubeconfig: %v", err)
	}
	return stream.Send(&common.Data{Bytes: archive})
}

// GenerateClientConfiguration is machined's (v1.11.5 v1alpha1_server.go), `talosctl config new
// --roles`: on a control plane, a talosconfig whose client certificate, signed by the machine CA
// of the active config, carries the roles asked as its organizations and expires after crt_ttl.
// Roles are taken as given, unknown ones included, as Talos does (talosctl refuses unknown ones).
func (n *Node) GenerateClientConfiguration(_ context.Context, req *machine.GenerateClientConfigurationRequest) (*machine.GenerateClientConfigurationResponse, error) {
	n.mu.Lock()
	cfg := n.cfg
	n.mu.Unlock()
	if cfg == nil {
		return nil, errMaintenanceUnimplemented("GenerateClientConfiguration")
	}
	if cfg.Machine().Type() == talosmachine.TypeWorker {
		return nil, status.Error(codes.FailedPrecondition, "client configuration (talosconfig) can't be generated on worker nodes")
	}
	ttl := req.GetCrtTtl().AsDuration()
	if ttl <= 0 {
		return nil, status.Error(codes.InvalidArgument, "crt_ttl should be positive")
	}
	roles, _ := role.Parse(req.GetRoles())
	bundle, err := secrets.NewBundleFromConfig(secrets.NewFixedClock(time.Now()), cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the secrets of the config: %v", err)
	}
	cert, err := clientCertificate(bundle.Certs.OS, roles, ttl)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issuing client certificate: %v", err)
	}
	// Talos names the context <role>@<cluster> when one role is asked, else <cluster>.
	contextName := clusterName(cfg)
	if r := roles.Strings(); len(r) == 1 {
		contextName = strings.TrimPrefix(r[0], role.Prefix) + "@" + contextName
	}
	talosconfig, err := clientconfig.NewConfig(contextName, nil, bundle.Certs.OS.Crt, cert).Bytes()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding talosconfig: %v", err)
	}
	return &machine.GenerateClientConfigurationResponse{Messages: []*machine.GenerateClientConfiguration{{
		Ca: bundle.Certs.OS.Crt, Crt: cert.Crt, Key: cert.Key, Talosconfig: talosconfig,
	}}}, nil
}

// Version reports the release the node runs: applying a configuration with a new installer image
// does not change it (Talos upgrades are a separate operation).
func (n *Node) Version(ctx context.Context, _ *emptypb.Empty) (*machine.VersionResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version:  &machine.VersionInfo{Tag: n.state.TalosVersion, Os: "linux", Arch: "amd64"},
		Platform: &machine.PlatformInfo{Name: "metal", Mode: "metal"},
	}}}, nil
}

// The simulated machine's hardware: one 100 GiB system disk and 4 GiB of memory, Talos'
// recommended size for a control plane (pkg/minimal/limits.go), the kernel's share taken off.
const (
	systemDiskSize = 100 << 30
	memTotalKiB    = (4<<30 - 150<<20) >> 10
)

// Memory is machined's /proc/meminfo reading (v1alpha1_server.go Memory): the simulated machine's
// total, all of it free. `talosctl health` checks the total against Talos' minimum per machine
// type (pkg/cluster/check/nodes.go AllNodesMemorySizes).
func (n *Node) Memory(context.Context, *emptypb.Empty) (*machine.MemoryResponse, error) {
	if !n.configured() {
		return nil, errMaintenanceUnimplemented("Memory")
	}
	return &machine.MemoryResponse{Messages: []*machine.Memory{{Meminfo: &machine.MemInfo{
		Memtotal: memTotalKiB, Memfree: memTotalKiB, Memavailable: memTotalKiB,
	}}}}, nil
}

// Disks answers the provider's reachability probe with one system disk.
func (n *Node) Disks(ctx context.Context, _ *emptypb.Empty) (*storage.DisksResponse, error) {
	return &storage.DisksResponse{Messages: []*storage.Disks{{Disks: []*storage.Disk{{
		DeviceName: "/dev/sda",
		Size:       systemDiskSize,
		Model:      "SIMULATED DISK",
		Type:       storage.Disk_SSD,
	}}}}}, nil
}
