package node

import (
	"context"
	"crypto/tls"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	yaml "go.yaml.in/yaml/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Each test gets its own loopback address so tests never share a node.
var nextHost atomic.Int32

const bootedSchematic = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"

// One trust registry, as in one simulator process.
var trust = NewTrust()

func startNode(t *testing.T) *Node {
	t.Helper()
	addr := "127.0.7." + strconv.Itoa(int(nextHost.Add(1))+10)
	n, err := New(addr, APIPort, "v1.11.5", bootedSchematic, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// cluster is what the talos provider holds: a secrets bundle, the configs made from it, and
// the talosconfig for mutual TLS.
type cluster struct {
	controlPlane []byte
	worker       []byte
	talosconfig  *clientconfig.Config
	// bundle holds the machine CA that signs client certificates of any role (authz_test.go).
	bundle *secrets.Bundle
}

// newCluster is a cluster of the 1.11 contract (the release most tests' nodes run, v1.11.5).
func newCluster(t *testing.T, name string) cluster {
	t.Helper()
	return newClusterOf(t, name, config.TalosVersion1_11)
}

// contracts are the config contracts the nodes read: 1.11's, Kubernetes settings in the v1alpha1
// sections; 1.14's, Kubernetes settings in Kube* documents (machinery config/generate, contract.go
// MultidocKubernetesConfigSupported).
var contracts = []*config.VersionContract{config.TalosVersion1_11, config.TalosVersion1_14}

// newClusterOf is a cluster whose secrets and configs are generated with a contract.
func newClusterOf(t *testing.T, name string, contract *config.VersionContract) cluster {
	t.Helper()
	bundle, err := secrets.NewBundle(secrets.NewClock(), contract)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput(name, "https://127.0.7.1:6443", "1.34.1", generate.WithSecretsBundle(bundle), generate.WithVersionContract(contract))
	if err != nil {
		t.Fatal(err)
	}
	encode := func(kind talosmachine.Type) []byte {
		cfg, err := in.Config(kind)
		if err != nil {
			t.Fatal(err)
		}
		data, err := cfg.EncodeBytes()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	return cluster{controlPlane: encode(talosmachine.TypeControlPlane), worker: encode(talosmachine.TypeWorker), talosconfig: tc, bundle: bundle}
}

func ctx(t *testing.T, n *Node) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return client.WithNode(c, n.address.String())
}

// insecure is the provider's first client: no client certificate, no server verification.
func insecure(t *testing.T, n *Node) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.WithEndpoints(n.Addr()), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// mutual is the provider's second client: the talosconfig's CA and admin certificate.
func mutual(t *testing.T, n *Node, tc *clientconfig.Config) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.WithConfig(tc), client.WithEndpoints(n.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func apply(t *testing.T, c *client.Client, n *Node, data []byte) error {
	t.Helper()
	return applyMode(t, c, n, data, machine.ApplyConfigurationRequest_AUTO)
}

func applyMode(t *testing.T, c *client.Client, n *Node, data []byte, mode machine.ApplyConfigurationRequest_Mode) error {
	t.Helper()
	_, err := c.ApplyConfiguration(ctx(t, n), &machine.ApplyConfigurationRequest{Data: data, Mode: mode})
	return err
}

// patched is a machine config with a strategic merge patch, as the provider's config_patches.
func patched(t *testing.T, data []byte, patch string) []byte {
	t.Helper()
	p, err := configpatcher.LoadPatch([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithBytes(data), []configpatcher.Patch{p})
	if err != nil {
		t.Fatal(err)
	}
	b, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bootstrap starts etcd on a configured control plane.
func bootstrap(t *testing.T, n *Node, cl cluster) {
	t.Helper()
	if err := mutual(t, n, cl.talosconfig).Bootstrap(ctx(t, n), &machine.BootstrapRequest{}); err != nil {
		t.Fatalf("bootstrap %s: %v", n.address, err)
	}
}

func TestMaintenanceModeAcceptsTheFirstConfigurationInsecurely(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if _, err := insecure(t, n).Disks(ctx(t, n)); err != nil {
		t.Fatalf("maintenance probe: %v", err)
	}
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatalf("maintenance apply: %v", err)
	}
	s := n.State()
	if !s.Configured || s.Applies != 1 || s.Role != "controlplane" || s.ApplyModes[0] != "AUTO" {
		t.Fatalf("state after apply: %+v", s)
	}
}

func TestMaintenanceModeTakesOnlyModesThatMayReboot(t *testing.T) {
	for _, tc := range []struct {
		mode    machine.ApplyConfigurationRequest_Mode
		code    codes.Code
		message string
	}{
		{machine.ApplyConfigurationRequest_AUTO, codes.OK, ""},
		{machine.ApplyConfigurationRequest_REBOOT, codes.OK, ""},
		{machine.ApplyConfigurationRequest_TRY, codes.OK, ""},
		{machine.ApplyConfigurationRequest_NO_REBOOT, codes.Unimplemented, "apply configuration --mode='no-reboot' is not supported in maintenance mode"},
		{machine.ApplyConfigurationRequest_STAGED, codes.Unimplemented, "apply configuration --mode='staged' is not supported in maintenance mode"},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			n, cl := startNode(t), newCluster(t, "lab")
			err := applyMode(t, insecure(t, n), n, cl.controlPlane, tc.mode)
			if status.Code(err) != tc.code || (tc.message != "" && status.Convert(err).Message() != tc.message) {
				t.Fatalf("got %v, want %s %q", err, tc.code, tc.message)
			}
			s := n.State()
			if tc.code != codes.OK {
				if s.Configured || s.Applies != 0 || len(s.ApplyModes) != 0 {
					t.Fatalf("a refused apply left state: %+v", s)
				}
				return
			}
			if !s.Configured || !slices.Equal(s.ApplyModes, []string{tc.mode.String()}) {
				t.Fatalf("state: configured %t, modes %v", s.Configured, s.ApplyModes)
			}
		})
	}
}

func TestAConfiguredNodeAppliesInPlaceAndRecordsTheModeAsked(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	for _, mode := range []machine.ApplyConfigurationRequest_Mode{machine.ApplyConfigurationRequest_NO_REBOOT, machine.ApplyConfigurationRequest_STAGED, machine.ApplyConfigurationRequest_AUTO} {
		if err := applyMode(t, c, n, cl.controlPlane, mode); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
	if got, want := n.State().ApplyModes, []string{"AUTO", "NO_REBOOT", "STAGED", "AUTO"}; !slices.Equal(got, want) {
		t.Fatalf("apply modes = %v, want %v", got, want)
	}
}

func TestConfiguredNodeRefusesClientsWithoutACertificate(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	// The provider's probe: it must fail now, so the provider switches to mutual TLS.
	if _, err := insecure(t, n).Disks(ctx(t, n)); err == nil {
		t.Fatal("insecure probe succeeded on a configured node")
	}
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err == nil {
		t.Fatal("second insecure apply accepted")
	}
	if n.State().Applies != 1 {
		t.Fatalf("applies = %d", n.State().Applies)
	}
}

func TestConfiguredNodeAcceptsAuthenticatedUpdates(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	if _, err := c.Disks(ctx(t, n)); err != nil {
		t.Fatalf("mTLS probe: %v", err)
	}
	if err := apply(t, c, n, cl.controlPlane); err != nil {
		t.Fatalf("authenticated apply: %v", err)
	}
	if n.State().Applies != 2 {
		t.Fatalf("applies = %d", n.State().Applies)
	}
}

func TestAnotherClustersCredentialsAreRefused(t *testing.T) {
	n, cl, other := startNode(t), newCluster(t, "lab"), newCluster(t, "other")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx(t, n), 5*time.Second)
	defer cancel()
	_, err := mutual(t, n, other.talosconfig).ApplyConfiguration(short, &machine.ApplyConfigurationRequest{Data: other.controlPlane})
	if err == nil {
		t.Fatal("apply with another cluster's CA accepted")
	}
	if n.State().Applies != 1 {
		t.Fatalf("applies = %d", n.State().Applies)
	}
}

func TestInvalidConfigurationIsInvalidArgument(t *testing.T) {
	n := startNode(t)
	err := apply(t, insecure(t, n), n, []byte("version: v1alpha1\nmachine: [not, a, map]\n"))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument (the one error the provider does not retry)", err)
	}
}

func TestBootstrapSucceedsOnceOnAControlPlane(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	if err := c.Bootstrap(ctx(t, n), &machine.BootstrapRequest{}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	err := c.Bootstrap(ctx(t, n), &machine.BootstrapRequest{})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second bootstrap: %v, want AlreadyExists", err)
	}
	if s := n.State(); !s.Bootstrapped || s.BootstrapCalls != 2 {
		t.Fatalf("state: %+v", s)
	}
}

func TestAWorkerServesMutualTLSOnceAControlPlaneOfItsClusterIsConfigured(t *testing.T) {
	cp, worker, cl := startNode(t), startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, worker), worker, cl.worker); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx(t, worker), 2*time.Second)
	defer cancel()
	if _, err := mutual(t, worker, cl.talosconfig).Disks(short); err == nil {
		t.Fatal("worker served mutual TLS before any control plane could sign its certificate")
	}
	if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	if _, err := mutual(t, worker, cl.talosconfig).Disks(ctx(t, worker)); err != nil {
		t.Fatalf("worker after control plane: %v", err)
	}
}

func TestBootstrapIsRefusedOnAWorker(t *testing.T) {
	cp, n, cl := startNode(t), startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, insecure(t, n), n, cl.worker); err != nil {
		t.Fatal(err)
	}
	err := mutual(t, n, cl.talosconfig).Bootstrap(ctx(t, n), &machine.BootstrapRequest{})
	if status.Code(err) != codes.FailedPrecondition || n.State().Bootstrapped {
		t.Fatalf("bootstrap on worker: %v", err)
	}
}

func TestKubeconfigIsAnAdminConfigForTheClusterEndpoint(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	raw, err := mutual(t, n, cl.talosconfig).Kubeconfig(ctx(t, n))
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	var kc struct {
		CurrentContext string `yaml:"current-context"`
		Contexts       []struct {
			Name    string
			Context struct{ Cluster, User string }
		}
		Clusters []struct {
			Name    string
			Cluster struct{ Server string }
		}
		Users []struct {
			Name string
			User struct {
				ClientCertificateData string `yaml:"client-certificate-data"`
			}
		}
	}
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		t.Fatalf("parse kubeconfig: %v", err)
	}
	// The provider dereferences the current context without a check: it must exist.
	if kc.CurrentContext != "admin@lab" || len(kc.Contexts) != 1 || kc.Contexts[0].Name != kc.CurrentContext {
		t.Fatalf("contexts: %+v current %q", kc.Contexts, kc.CurrentContext)
	}
	if len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != "https://127.0.7.1:6443" {
		t.Fatalf("clusters: %+v", kc.Clusters)
	}
	if len(kc.Users) != 1 || kc.Users[0].User.ClientCertificateData == "" {
		t.Fatal("no client certificate")
	}
}

func TestVersionReportsTheRunningRelease(t *testing.T) {
	n := startNode(t)
	resp, err := insecure(t, n).Version(ctx(t, n))
	if err != nil {
		t.Fatal(err)
	}
	if tag := resp.GetMessages()[0].GetVersion().GetTag(); tag != "v1.11.5" {
		t.Fatalf("tag = %s", tag)
	}
}

func TestAStoppedNodeRefusesConnectionsAndComesBackWithItsState(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	short, cancel := context.WithTimeout(ctx(t, n), 2*time.Second)
	defer cancel()
	if _, err := mutual(t, n, cl.talosconfig).Disks(short); err == nil {
		t.Fatal("stopped node answered")
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := mutual(t, n, cl.talosconfig).Disks(ctx(t, n)); err != nil {
		t.Fatalf("restarted node: %v", err)
	}
	if s := n.State(); !s.Configured || s.Applies != 1 {
		t.Fatalf("state lost: %+v", s)
	}
}

// TestNodeMetadataIsForwardedOnceConfigured: in maintenance there is no apid and the metadata is
// not looked at; a configured node's apid dials the node named, and a machine nobody runs at
// that address is Unavailable, not answered by the endpoint in its place.
func TestNodeMetadataIsForwardedOnceConfigured(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if _, err := insecure(t, n).Disks(client.WithNode(ctx(t, n), "127.0.7.250")); err != nil {
		t.Fatalf("maintenance with another node: %v", err)
	}
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	_, err := mutual(t, n, cl.talosconfig).Disks(client.WithNode(ctx(t, n), "127.0.7.250"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	// The `node` metadata names one node, with one value.
	_, err = mutual(t, n, cl.talosconfig).Disks(metadata.AppendToOutgoingContext(ctx(t, n), "node", "127.0.7.251"))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("two node values: got %v, want InvalidArgument", err)
	}
}

func TestCOSIServesTheAppliedMachineConfig(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	first, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), c.COSI, configres.ActiveID)
	if err != nil {
		t.Fatalf("get MachineConfig: %v", err)
	}
	if first.Config().K8sClusterConfig().ClusterName() != "lab" || first.Config().Machine().Type() != talosmachine.TypeControlPlane {
		t.Fatalf("unexpected config: %s %s", first.Config().K8sClusterConfig().ClusterName(), first.Config().Machine().Type())
	}
	// An update replaces the stored resource, as a later apply does on Talos.
	if err := apply(t, c, n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	second, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), c.COSI, configres.ActiveID)
	if err != nil {
		t.Fatal(err)
	}
	if second.Metadata().Version().Equal(first.Metadata().Version()) {
		t.Fatalf("version did not move: %s -> %s", first.Metadata().Version(), second.Metadata().Version())
	}
}

func TestCOSIServesTheBootedSchematicAsAnExtension(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	list, err := safe.StateListAll[*runtime.ExtensionStatus](ctx(t, n), mutual(t, n, cl.talosconfig).COSI)
	if err != nil {
		t.Fatalf("list extensions: %v", err)
	}
	found := ""
	for ext := range list.All() {
		if ext.TypedSpec().Metadata.Name == "schematic" {
			found = ext.TypedSpec().Metadata.Version
		}
	}
	if found != bootedSchematic {
		t.Fatalf("schematic extension version = %q", found)
	}
}
