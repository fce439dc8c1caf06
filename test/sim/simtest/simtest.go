// Package simtest is the test fixture of the simulator, for its own tests and those of the
// talosnode provider: one cluster's secrets, the configs and talosconfig made from them, the
// client configuration the talos provider would hand over, and simulated nodes stopped when the
// test ends. Nodes are real gRPC servers on loopback, reached with the machinery client like real
// ones.
//
// Credentials are plain strings (base64 PEM), so the simulator never imports talosnode; a
// talosnode test converts them (node.Credentials(c.Credentials): the fields match). The
// simulator's own in-package tests (package node) cannot import this package, which imports
// theirs: Go refuses the cycle.
package simtest

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"talos-cluster/sim/internal/toolbin"
	simnode "talos-cluster/sim/node"
)

// What the nodes run unless a test says otherwise.
// Contract is the config contract of that release, the one NewCluster generates with: secrets
// and configs as Talos 1.11 makes them. A cluster of the 1.14 contract (NewClusterOf with
// config.TalosVersion1_14) has its CAs and Kubernetes settings in Kube* documents instead.
var Contract = config.TalosVersion1_11

const (
	TalosVersion      = "v1.11.5"
	KubernetesVersion = "1.34.1"
	// Schematic is the factory id of a schematic with only siderolabs/intel-ucode.
	Schematic = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"
	Installer = "factory.talos.dev/installer/" + Schematic + ":" + TalosVersion
	// OtherSchematic is another factory id (intel-ucode and iscsi-tools).
	OtherSchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
)

// Credentials is a cluster's client configuration as base64 PEM: the shape of the talos
// provider's machine.Secrets clientConfiguration and of talosnode's node.Credentials.
type Credentials struct {
	CACertificate     string
	ClientCertificate string
	ClientKey         string
}

// Cluster is one cluster's secrets and one simulation (a Trust, as in one simulator process).
type Cluster struct {
	Name     string
	Endpoint string
	// Contract is the config contract its secrets and configs are generated with.
	Contract *config.VersionContract
	Bundle   *secrets.Bundle
	Trust    *simnode.Trust
	// Talosconfig is the cluster's talosconfig (os:admin), as `talosctl gen config` writes it.
	Talosconfig *clientconfig.Config
	// Credentials is its current context's client configuration (os:admin).
	Credentials Credentials
}

// LabEndpoint is the API server URL of New's cluster: a name in configs, never bound.
const LabEndpoint = "https://127.0.9.1:6443"

// New makes the secrets of a cluster named "lab" whose API server is https://127.0.9.1:6443,
// and an empty simulation.
func New(t *testing.T) *Cluster {
	t.Helper()
	return NewCluster(t, "lab", LabEndpoint)
}

// NewCluster makes a cluster's secrets for name and its Kubernetes endpoint, and an empty
// simulation.
func NewCluster(t *testing.T, name, endpoint string) *Cluster {
	t.Helper()
	return NewClusterOf(t, name, endpoint, Contract)
}

// NewClusterOf is NewCluster with the secrets and configs of a config contract.
func NewClusterOf(t *testing.T, name, endpoint string, contract *config.VersionContract) *Cluster {
	t.Helper()
	bundle, err := secrets.NewBundle(secrets.NewClock(), contract)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput(name, endpoint, KubernetesVersion, generate.WithSecretsBundle(bundle), generate.WithVersionContract(contract))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx := tc.Contexts[tc.Context]
	return &Cluster{
		Name:        name,
		Endpoint:    endpoint,
		Contract:    contract,
		Bundle:      bundle,
		Trust:       simnode.NewTrust(),
		Talosconfig: tc,
		Credentials: Credentials{CACertificate: ctx.CA, ClientCertificate: ctx.Crt, ClientKey: ctx.Key},
	}
}

// CredentialsWith is a client configuration of the cluster whose certificate carries the given
// Talos roles (O=), as `talosctl config new --roles` issues one.
func (c *Cluster) CredentialsWith(t *testing.T, roles ...role.Role) Credentials {
	t.Helper()
	cert, err := c.Bundle.GenerateTalosAPIClientCertificate(role.MakeSet(roles...))
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	return Credentials{CACertificate: enc(c.Bundle.Certs.OS.Crt), ClientCertificate: enc(cert.Crt), ClientKey: enc(cert.Key)}
}

// ControlPlane is a control plane config of the cluster running kubernetes and installing image,
// with a strategic merge patch (YAML) if patch is not empty.
func (c *Cluster) ControlPlane(t *testing.T, kubernetes, image, patch string) []byte {
	t.Helper()
	return c.Config(t, talosmachine.TypeControlPlane, kubernetes, image, patch)
}

// Worker is ControlPlane for a worker. A configured worker answers over mutual TLS only once a
// control plane of the cluster is configured (it signs the worker's API certificate, as trustd).
func (c *Cluster) Worker(t *testing.T, kubernetes, image, patch string) []byte {
	t.Helper()
	return c.Config(t, talosmachine.TypeWorker, kubernetes, image, patch)
}

// Config is a config of the cluster for kind, running kubernetes, installing image (Talos'
// default when ""), with each non-empty strategic merge patch applied in order, as the talos
// provider's config_patches.
func (c *Cluster) Config(t *testing.T, kind talosmachine.Type, kubernetes, image string, patches ...string) []byte {
	t.Helper()
	opts := []generate.Option{generate.WithSecretsBundle(c.Bundle), generate.WithVersionContract(c.Contract)}
	if image != "" {
		opts = append(opts, generate.WithInstallImage(image))
	}
	in, err := generate.NewInput(c.Name, c.Endpoint, kubernetes, opts...)
	if err != nil {
		t.Fatal(err)
	}
	generated, err := in.Config(kind)
	if err != nil {
		t.Fatal(err)
	}
	data, err := generated.EncodeBytes()
	if err != nil {
		t.Fatal(err)
	}
	return Patched(t, data, patches...)
}

// Patched is a machine config with each non-empty strategic merge patch (YAML) applied in order.
func Patched(t *testing.T, data []byte, patches ...string) []byte {
	t.Helper()
	var ps []configpatcher.Patch
	for _, patch := range patches {
		if patch == "" {
			continue
		}
		p, err := configpatcher.LoadPatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return data
	}
	out, err := configpatcher.Apply(configpatcher.WithBytes(data), ps)
	if err != nil {
		t.Fatal(err)
	}
	data, err = out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Node starts a simulated machine in maintenance mode on apid's port, stopped when the test ends.
// Its links are simnode.DefaultLinks unless an option (simnode.WithLinks) says otherwise.
func (c *Cluster) Node(t *testing.T, address, talosVersion, schematic string, opts ...simnode.Option) *simnode.Node {
	t.Helper()
	return c.NodeOn(t, address, simnode.APIPort, talosVersion, schematic, opts...)
}

// NodeOn is Node on another port (toolbin's free ports, where a hand-started simulator may hold
// 50000).
func (c *Cluster) NodeOn(t *testing.T, address string, port int, talosVersion, schematic string, opts ...simnode.Option) *simnode.Node {
	t.Helper()
	n, err := simnode.New(address, port, talosVersion, schematic, c.Trust, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// Apply installs a config on a node in maintenance mode, as the talos provider's first apply.
func Apply(t *testing.T, n *simnode.Node, data []byte) {
	t.Helper()
	if err := Install(n, data); err != nil {
		t.Fatal(err)
	}
}

// Install is Apply for a goroutine, which may not end the test.
func Install(n *simnode.Node, data []byte) error {
	c, err := client.New(context.Background(), client.WithEndpoints(n.Addr()), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: data}); err != nil {
		return fmt.Errorf("apply to %s: %w", n.Addr(), err)
	}
	return nil
}

// Configured starts a machine running talosVersion from the default schematic, with config (a
// control plane's or a worker's) applied: a node as the stack declares it.
func (c *Cluster) Configured(t *testing.T, address string, data []byte, opts ...simnode.Option) *simnode.Node {
	t.Helper()
	n := c.Node(t, address, TalosVersion, Schematic, opts...)
	Apply(t, n, data)
	return n
}

// Client is a client of the node alone with the cluster's talosconfig (mutual TLS, os:admin),
// closed when the test ends.
func (c *Cluster) Client(t *testing.T, n *simnode.Node) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.WithConfigContext(&clientconfig.Context{
		Endpoints: []string{n.Addr()},
		CA:        c.Credentials.CACertificate,
		Crt:       c.Credentials.ClientCertificate,
		Key:       c.Credentials.ClientKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Bootstrap starts etcd on a configured control plane, as the talos provider's bootstrap.
func (c *Cluster) Bootstrap(t *testing.T, n *simnode.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Client(t, n).Bootstrap(ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatalf("bootstrap %s: %v", n.Addr(), err)
	}
}

// RealControlPlane makes the cluster, once bootstrapped, run a real etcd and kube-apiserver (the
// binaries `npm run setup` builds: $ETCD and $KUBE_APISERVER, else node_modules/.bin), started
// delay after the bootstrap (at once when negative) and stopped when the test ends. Without the
// binaries the test is skipped, or fails when CI=true.
func (c *Cluster) RealControlPlane(t *testing.T, delay time.Duration) {
	t.Helper()
	cp := simnode.ControlPlane{Etcd: toolbin.Binary(t, "ETCD", "etcd"), KubeAPIServer: toolbin.Binary(t, "KUBE_APISERVER", "kube-apiserver"), Delay: delay}
	if err := c.Trust.RunControlPlane(cp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Trust.Close)
}

// FreePort is a port nothing listens on at host.
func FreePort(t *testing.T, host string) int {
	t.Helper()
	return toolbin.FreePort(t, host)
}

// Factory is the Image Factory upgrades pull installers from: factory.talos.dev installer images
// of any 64-hex schematic and the given Talos versions.
type Factory struct{ Versions []string }

// Installer resolves an installer image as a pull would.
func (f Factory) Installer(ref string) (schematic, version string, err error) {
	rest, ok := strings.CutPrefix(ref, "factory.talos.dev/installer/")
	schematic, version, found := strings.Cut(rest, ":")
	if !ok || !found || len(schematic) != 64 || !slices.Contains(f.Versions, version) {
		return "", "", fmt.Errorf("failed to pull image %q: not found", ref)
	}
	return schematic, version, nil
}

// InstallerOf is the factory installer image of a schematic and release.
func InstallerOf(schematic, version string) string {
	return "factory.talos.dev/installer/" + schematic + ":" + version
}
