// Package lab sets up simulated Talos nodes (talos-cluster/sim) for tests: one cluster's secrets,
// the configs made from them, and the client configuration the talos provider would hand over.
// Nodes are real gRPC servers on loopback, reached with the machinery client like real ones.
package lab

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
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/role"

	simnode "talos-cluster/sim/node"
	"talos-cluster/talosnode/node"
)

// What lab nodes run unless a test says otherwise.
const (
	TalosVersion      = "v1.11.5"
	KubernetesVersion = "1.34.1"
	Schematic         = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"
	Installer         = "factory.talos.dev/installer/" + Schematic + ":" + TalosVersion
	// OtherSchematic is another factory id (intel-ucode and iscsi-tools).
	OtherSchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
)

// Lab is one cluster's secrets and one simulation.
type Lab struct {
	Bundle *secrets.Bundle
	Trust  *simnode.Trust
	// Credentials is the cluster's client configuration (os:admin), as base64 PEM.
	Credentials node.Credentials
}

// New makes a cluster's secrets and an empty simulation.
func New(t *testing.T) *Lab {
	t.Helper()
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersionCurrent)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput("lab", "https://127.0.9.1:6443", KubernetesVersion, generate.WithSecretsBundle(bundle))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx := tc.Contexts[tc.Context]
	return &Lab{
		Bundle:      bundle,
		Trust:       simnode.NewTrust(),
		Credentials: node.Credentials{CACertificate: ctx.CA, ClientCertificate: ctx.Crt, ClientKey: ctx.Key},
	}
}

// CredentialsWith is a client configuration of the lab's cluster whose certificate carries the
// given Talos roles (O=), as `talosctl config new --roles` issues one.
func (l *Lab) CredentialsWith(t *testing.T, roles ...role.Role) node.Credentials {
	t.Helper()
	cert, err := l.Bundle.GenerateTalosAPIClientCertificate(role.MakeSet(roles...))
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	return node.Credentials{CACertificate: enc(l.Bundle.Certs.OS.Crt), ClientCertificate: enc(cert.Crt), ClientKey: enc(cert.Key)}
}

// ControlPlane is a control plane config of the lab's cluster running kubernetes and installing
// image, with a strategic merge patch (YAML) if patch is not empty.
func (l *Lab) ControlPlane(t *testing.T, kubernetes, image, patch string) []byte {
	t.Helper()
	return l.config(t, talosmachine.TypeControlPlane, kubernetes, image, patch)
}

// Worker is ControlPlane for a worker. A configured worker answers over mutual TLS only once a
// control plane of the lab is configured (it signs the worker's API certificate, as trustd).
func (l *Lab) Worker(t *testing.T, kubernetes, image, patch string) []byte {
	t.Helper()
	return l.config(t, talosmachine.TypeWorker, kubernetes, image, patch)
}

func (l *Lab) config(t *testing.T, role talosmachine.Type, kubernetes, image, patch string) []byte {
	t.Helper()
	in, err := generate.NewInput("lab", "https://127.0.9.1:6443", kubernetes, generate.WithSecretsBundle(l.Bundle), generate.WithInstallImage(image))
	if err != nil {
		t.Fatal(err)
	}
	generated, err := in.Config(role)
	if err != nil {
		t.Fatal(err)
	}
	var cfg configpatcher.Input = configpatcher.WithConfig(generated)
	if patch != "" {
		p, err := configpatcher.LoadPatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err = configpatcher.Apply(cfg, []configpatcher.Patch{p}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Node starts a simulated machine in maintenance mode, stopped when the test ends. Its links are
// simnode.DefaultLinks unless an option (simnode.WithLinks) says otherwise.
func (l *Lab) Node(t *testing.T, address, talosVersion, schematic string, opts ...simnode.Option) *simnode.Node {
	t.Helper()
	n, err := simnode.New(address, simnode.APIPort, talosVersion, schematic, l.Trust, opts...)
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

// Configured starts a machine running talosVersion from the lab schematic, with config (a control
// plane's or a worker's) applied: a node as the stack declares it.
func (l *Lab) Configured(t *testing.T, address string, data []byte, opts ...simnode.Option) *simnode.Node {
	t.Helper()
	n := l.Node(t, address, TalosVersion, Schematic, opts...)
	Apply(t, n, data)
	return n
}

// Bootstrap starts etcd on a configured control plane, as the talos provider's bootstrap.
func (l *Lab) Bootstrap(t *testing.T, n *simnode.Node) {
	t.Helper()
	c, err := node.Dial(context.Background(), node.Target{Address: n.Addr()}, l.Credentials)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Bootstrap(ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatalf("bootstrap %s: %v", n.Addr(), err)
	}
}

// Factory is the Image Factory the lab's upgrades pull installers from: factory.talos.dev
// installer images of any 64-hex schematic and the given Talos versions.
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
