package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"

	"github.com/siderolabs/grpc-proxy/proxy"
	sidnet "github.com/siderolabs/net"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcinsecure "google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A configured Talos node answers its API through apid (Talos v1.11.5 internal/app/apid/main.go):
// apid listens on the network, finds the caller's roles (pkg/grpc/middleware/authz/injector.go,
// mode Enabled) and hands every call to its router (internal/app/apid/pkg/director/director.go),
// which proxies it with siderolabs/grpc-proxy either to machined on a local socket (roles passed
// in the `talos-role` metadata, pkg/grpc/proxy/backend/local.go) or to the apid of each node the
// `node`/`nodes` metadata names (internal/app/apid/pkg/backend/apid.go). Here the same: machined
// is a gRPC server on an in-memory listener, and the other nodes are dialled at their address and
// API port with a client certificate from the machine CA that holds
// os:impersonator, so each target's own role checks judge the caller's roles.

// machineAPI is one boot's API: apid on the network, machined behind it.
type machineAPI struct {
	apid     *grpc.Server
	machined *grpc.Server
	local    *bufconn.Listener

	mu       sync.Mutex
	conns    []*grpc.ClientConn
	localCC  *grpc.ClientConn
	remoteCC map[string]*grpc.ClientConn
}

// streamedMethods are the server-streaming methods apid proxies as streams (apid main.go's list,
// and its rule that a method whose name ends in Stream streams); LifecycleService's from Talos
// 1.13 (v1.14.1 internal/app/apid/service.go:88-104).
var streamedMethods = regexp.MustCompile(`^/(machine\.MachineService/(Copy|DiskUsage|Dmesg|EtcdSnapshot|Events|ImageList|Kubeconfig|List|Logs|PacketCapture|Read)|machine\.LifecycleService/(Install|Upgrade)|os\.OSService/Dmesg|cluster\.ClusterService/HealthCheck)$|Stream$`)

// newMachineAPI builds apid and machined; machined serves the handlers register adds.
func (n *Node) newMachineAPI(register func(*grpc.Server)) *machineAPI {
	a := &machineAPI{local: bufconn.Listen(1 << 20), remoteCC: map[string]*grpc.ClientConn{}}
	a.machined = grpc.NewServer(grpc.UnaryInterceptor(n.unaryAuthz), grpc.StreamInterceptor(n.streamAuthz))
	register(a.machined)
	a.apid = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{GetConfigForClient: n.tlsConfig})),
		grpc.ForceServerCodecV2(proxy.Codec()),
		grpc.UnknownServiceHandler(proxy.TransparentHandler(
			func(ctx context.Context, method string) (proxy.Mode, []proxy.Backend, error) {
				return n.direct(ctx, a, method)
			},
			proxy.WithStreamedDetector(streamedMethods.MatchString))),
		grpc.StreamInterceptor(n.inject))
	return a
}

// serve runs machined in the background and apid on lis until stopped.
func (a *machineAPI) serve(lis net.Listener) error {
	go func() { _ = a.machined.Serve(a.local) }()
	return a.apid.Serve(lis)
}

// Stop ends both servers at once and closes the connections apid made.
func (a *machineAPI) Stop() {
	a.apid.Stop()
	a.machined.Stop()
	a.closeConns()
}

// GracefulStop lets running calls finish first.
func (a *machineAPI) GracefulStop() {
	a.apid.GracefulStop()
	a.machined.GracefulStop()
	a.closeConns()
}

func (a *machineAPI) closeConns() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cc := range a.conns {
		_ = cc.Close()
	}
	a.conns, a.localCC, a.remoteCC = nil, nil, map[string]*grpc.ClientConn{}
}

// direct is apid's router (director.go Router.Director) for one call.
func (n *Node) direct(ctx context.Context, a *machineAPI, method string) (proxy.Mode, []proxy.Backend, error) {
	local := []proxy.Backend{localBackend{a}}
	n.mu.Lock()
	configured := n.osCACert != nil
	n.mu.Unlock()
	md, ok := metadata.FromIncomingContext(ctx)
	// In maintenance there is no apid: the maintenance service answers for itself whatever the
	// metadata says (talosctl --insecure sends none). A call another apid forwarded
	// (`proxyfrom`) is for this machine's machined.
	if !configured || !ok || len(md.Get("proxyfrom")) > 0 {
		return proxy.One2One, local, nil
	}
	nodes, many := md["nodes"]
	node, one := md["node"]
	if one && len(node) != 1 {
		return proxy.One2One, nil, status.Error(codes.InvalidArgument, "node metadata must be single-valued")
	}
	switch {
	case many:
		// COSI's State service is not built for one-2-many replies (director.go).
		if strings.HasPrefix(method, "/cosi.") {
			return proxy.One2One, nil, status.Error(codes.InvalidArgument, "one-2-many proxying is not supported for COSI methods")
		}
		backends := make([]proxy.Backend, len(nodes))
		for i, target := range nodes {
			b, err := n.remoteBackend(a, target)
			if err != nil {
				return proxy.One2Many, nil, status.Error(codes.Internal, err.Error())
			}
			backends[i] = b
		}
		return proxy.One2Many, backends, nil
	case one:
		b, err := n.remoteBackend(a, node[0])
		if err != nil {
			return proxy.One2One, nil, status.Error(codes.Internal, err.Error())
		}
		return proxy.One2One, []proxy.Backend{b}, nil
	default:
		return proxy.One2One, local, nil
	}
}

// remoteBackend is apid's backend for another node (NewAPID: a target is an address without a
// port; apid dials it at its own API port).
func (n *Node) remoteBackend(a *machineAPI, target string) (proxy.Backend, error) {
	if target == "" || sidnet.AddressContainsPort(target) {
		return nil, fmt.Errorf("invalid target %q", target)
	}
	return remoteBackend{node: n, api: a, target: target}, nil
}

// inject is apid's authz injector (mode Enabled) on the network: the roles of the caller's
// certificate, or those an os:impersonator (another apid) names in the `talos-role` metadata.
// A call without a client certificate is refused here; the role check itself is machined's.
func (n *Node) inject(srv any, stream grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := stream.Context()
	n.mu.Lock()
	configured := n.osCACert != nil
	n.mu.Unlock()
	var roles role.Set
	if configured {
		var err error
		if roles, err = certificateRoles(ctx); err != nil {
			return err
		}
	}
	return handler(srv, rolesStream{stream, context.WithValue(ctx, rolesKey{}, roles)})
}

// localBackend is machined behind apid (pkg/grpc/proxy/backend/local.go): the caller's roles
// travel in the `talos-role` metadata; replies pass unchanged.
type localBackend struct{ api *machineAPI }

func (localBackend) String() string { return "machined" }

func (b localBackend) GetConnection(ctx context.Context, _ string) (context.Context, *grpc.ClientConn, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	setRoles(md, callerRoles(ctx))
	b.api.mu.Lock()
	defer b.api.mu.Unlock()
	if b.api.localCC == nil {
		cc, err := grpc.NewClient("passthrough:///machined",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return b.api.local.DialContext(ctx) }),
			grpc.WithTransportCredentials(grpcinsecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(proxy.Codec())))
		if err != nil {
			return ctx, nil, err
		}
		b.api.localCC = cc
		b.api.conns = append(b.api.conns, cc)
	}
	return metadata.NewOutgoingContext(ctx, md), b.api.localCC, nil
}

func (localBackend) AppendInfo(_ bool, resp []byte) ([]byte, error) { return resp, nil }

func (localBackend) BuildError(bool, error) ([]byte, error) { return nil, nil }

// setRoles is authz.SetMetadata: the roles as the `talos-role` metadata, replacing any.
func setRoles(md metadata.MD, roles role.Set) {
	delete(md, constants.APIAuthzRoleMetadataKey)
	md.Set(constants.APIAuthzRoleMetadataKey, roles.Strings()...)
}

// remoteBackend is another node's apid (internal/app/apid/pkg/backend/apid.go).
type remoteBackend struct {
	node   *Node
	api    *machineAPI
	target string
}

func (b remoteBackend) String() string { return b.target }

// GetConnection passes the caller's metadata on with its roles (talos-role), marks the call as
// forwarded (proxyfrom: the authority the caller dialled) and drops node/nodes, as apid does.
func (b remoteBackend) GetConnection(ctx context.Context, _ string) (context.Context, *grpc.ClientConn, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	setRoles(md, callerRoles(ctx))
	if authority := md[":authority"]; len(authority) > 0 {
		md.Set("proxyfrom", authority...)
	} else {
		md.Set("proxyfrom", "unknown")
	}
	delete(md, ":authority")
	delete(md, "nodes")
	delete(md, "node")
	out := metadata.NewOutgoingContext(ctx, md)
	b.api.mu.Lock()
	defer b.api.mu.Unlock()
	if cc := b.api.remoteCC[b.target]; cc != nil {
		return out, cc, nil
	}
	tlsConfig, err := b.node.apidClientTLS()
	if err != nil {
		return out, nil, err
	}
	cc, err := grpc.NewClient(b.node.trust.apidAddr(b.target, b.node.port),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(proxy.Codec())))
	if err != nil {
		return out, nil, err
	}
	b.api.remoteCC[b.target] = cc
	b.api.conns = append(b.api.conns, cc)
	return out, cc, nil
}

// AppendInfo puts the target into each reply's metadata.hostname, as apid does: a unary reply
// is `repeated Reply messages = 1`, so the one message gets a common.Metadata (field 1) appended;
// a streamed message gets it appended directly.
func (b remoteBackend) AppendInfo(streaming bool, resp []byte) ([]byte, error) {
	payload, err := proto.Marshal(&common.Empty{Metadata: &common.Metadata{Hostname: b.target}})
	if err != nil {
		return nil, err
	}
	if streaming {
		return append(resp, payload...), nil
	}
	const messagesField = protowire.Number(1)
	num, typ, n := protowire.ConsumeTag(resp)
	if n < 0 {
		return nil, protowire.ParseError(n)
	}
	if num != messagesField || typ != protowire.BytesType {
		return nil, fmt.Errorf("unexpected message format: field %d of type %d", num, typ)
	}
	msg, m := protowire.ConsumeBytes(resp[n:])
	if m < 0 {
		return nil, protowire.ParseError(m)
	}
	out := protowire.AppendTag(nil, messagesField, protowire.BytesType)
	out = protowire.AppendBytes(out, append(append([]byte{}, msg...), payload...))
	return out, nil
}

// BuildError is the target's failure as a message of its own: metadata.hostname, .error and
// .status, so the other nodes' replies still reach the caller.
func (b remoteBackend) BuildError(streaming bool, err error) ([]byte, error) {
	msg := &common.Empty{Metadata: &common.Metadata{Hostname: b.target, Error: err.Error(), Status: status.Convert(err).Proto()}}
	if streaming {
		return proto.Marshal(msg)
	}
	return proto.Marshal(&common.EmptyResponse{Messages: []*common.Empty{msg}})
}

// apidAddr is where apid reaches target: Talos dials every node at the one apid port
// (constants.ApidPort); a simulation may give each node its own port, so a target that is a node
// of this simulation is dialled at that node's port, and any other at the port of the node asking.
func (t *Trust) apidAddr(target string, port int) string {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	for _, n := range t.nodes {
		if n.address.String() == target {
			port = n.port
		}
	}
	return fmt.Sprintf("%s:%d", sidnet.FormatAddress(target), port)
}

// apidClientTLS is apid's client side (apid main.go, tlsConfig.ClientConfig): a certificate from
// the machine CA with the os:impersonator role, trusting the machine CA's servers.
func (n *Node) apidClientTLS() (*tls.Config, error) {
	n.mu.Lock()
	caCert := n.osCACert
	n.mu.Unlock()
	if caCert == nil {
		return nil, errors.New("no machine CA: the node is in maintenance")
	}
	ca, ok := n.trust.signer(caCert)
	if !ok {
		return nil, errors.New("no control plane of this cluster holds the machine CA key yet")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := issue(ca, &stdx509.Certificate{
		Subject:     pkix.Name{CommonName: "apid", Organization: []string{string(role.Impersonator)}},
		KeyUsage:    stdx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
	}, pub)
	if err != nil {
		return nil, err
	}
	pool := stdx509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
	}, nil
}
