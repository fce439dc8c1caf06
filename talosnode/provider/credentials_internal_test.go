package provider

import (
	"context"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	yaml "go.yaml.in/yaml/v4"

	"talos-cluster/sim/simtest"
)

func credentialsServer(t *testing.T) integration.Server {
	t.Helper()
	prov, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := integration.NewServer(context.Background(), Name, semver.MustParse("0.1.0"), integration.WithProvider(prov))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var credentialsURN = presource.NewURN("test", "talos-cluster", "", credentialsType, "lab-credentials")

// bundleValue is a bundle as the talos plugin's machine.Secrets outputs its machineSecrets, secret.
func bundleValue(b *secrets.Bundle) property.Value {
	e := func(v []byte) property.Value { return property.New(base64.StdEncoding.EncodeToString(v)) }
	pair := func(crt, key []byte) property.Value {
		return property.New(map[string]property.Value{"cert": e(crt), "key": e(key)})
	}
	c := b.Certs
	s := func(v string) property.Value { return property.New(v) }
	m := func(v map[string]property.Value) property.Value { return property.New(v) }
	return property.New(map[string]property.Value{
		"cluster":    m(map[string]property.Value{"id": s(b.Cluster.ID), "secret": s(b.Cluster.Secret)}),
		"secrets":    m(map[string]property.Value{"bootstrapToken": s(b.Secrets.BootstrapToken), "secretboxEncryptionSecret": s(b.Secrets.SecretboxEncryptionSecret)}),
		"trustdinfo": m(map[string]property.Value{"token": s(b.TrustdInfo.Token)}),
		"certs": m(map[string]property.Value{
			"etcd": pair(c.Etcd.Crt, c.Etcd.Key), "k8s": pair(c.K8s.Crt, c.K8s.Key),
			"k8sAggregator":     pair(c.K8sAggregator.Crt, c.K8sAggregator.Key),
			"k8sServiceaccount": m(map[string]property.Value{"key": e(c.K8sServiceAccount.Key)}),
			"os":                pair(c.OS.Crt, c.OS.Key),
		}),
	}).WithSecret(true)
}

func credentialsInputs(l *simtest.Cluster, endpoints ...string) property.Map {
	list := make([]property.Value, len(endpoints))
	for i, e := range endpoints {
		list[i] = property.New(e)
	}
	return property.NewMap(map[string]property.Value{
		"clusterName":     property.New(l.Name),
		"clusterEndpoint": property.New(l.Endpoint),
		"endpoints":       property.New(list),
		"machineSecrets":  bundleValue(l.Bundle),
	})
}

// setClock makes the provider's clock now() for the test.
func setClock(t *testing.T, now func() time.Time) {
	t.Helper()
	was := clock
	clock = now
	t.Cleanup(func() { clock = was })
}

func mustString(t *testing.T, m property.Map, key string) string {
	t.Helper()
	v := m.Get(key)
	if !v.IsString() || v.AsString() == "" {
		t.Fatalf("%s is %v", key, v)
	}
	return v.AsString()
}

func certificateOf(t *testing.T, b64 string) *stdx509.Certificate {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(der)
	if block == nil {
		t.Fatal("not PEM")
	}
	crt, err := stdx509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}

// The diff asks for new credentials once either has renewBefore or less left at the provider's
// clock, and not a second before; the update mints both anew, a year from then.
func TestCredentialsRenewAtTheMarginNotBefore(t *testing.T) {
	l := simtest.New(t)
	start := time.Now()
	setClock(t, func() time.Time { return start })
	s := credentialsServer(t)
	checked, err := s.Check(p.CheckRequest{Urn: credentialsURN, Inputs: credentialsInputs(l, "127.0.10.161")})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", err, checked.Failures)
	}
	created, err := s.Create(p.CreateRequest{Urn: credentialsURN, Properties: checked.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	state := created.Properties
	for _, key := range []string{"talosconfig", "kubeconfig"} {
		if !state.Get(key).Secret() {
			t.Errorf("%s is not secret", key)
		}
	}
	end, err := time.Parse(time.RFC3339, mustString(t, state, "kubeconfigNotAfter"))
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(CredentialsLifetime); end.Before(want.Add(-time.Second)) || end.After(want.Add(time.Second)) {
		t.Errorf("kubeconfigNotAfter %s, want a year from %s", end, start)
	}
	diffAt := func(now time.Time) p.DiffResponse {
		setClock(t, func() time.Time { return now })
		d, err := s.Diff(p.DiffRequest{Urn: credentialsURN, ID: created.ID, State: state, Inputs: checked.Inputs})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	margin := 720 * time.Hour
	if d := diffAt(end.Add(-margin - time.Second)); d.HasChanges {
		t.Errorf("a second before the margin: %v", d.DetailedDiff)
	}
	d := diffAt(end.Add(-margin))
	if !d.HasChanges || d.DetailedDiff["kubeconfig"].Kind != p.Update || d.DetailedDiff["talosconfig"].Kind != p.Update {
		t.Fatalf("at the margin: %+v, want an update of both", d)
	}

	// A shorter renewBefore moves the margin.
	shorter := checked.Inputs.Set("renewBefore", property.New("24h"))
	setClock(t, func() time.Time { return end.Add(-25 * time.Hour) })
	if d, _ := s.Diff(p.DiffRequest{Urn: credentialsURN, State: state, Inputs: shorter}); d.HasChanges && d.DetailedDiff["kubeconfig"].Kind == p.Update {
		t.Errorf("renewBefore 24h, 25h left: %v", d.DetailedDiff)
	}

	renewedAt := end.Add(-margin)
	setClock(t, func() time.Time { return renewedAt })
	preview, err := s.Update(p.UpdateRequest{Urn: credentialsURN, State: state, Inputs: checked.Inputs, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !preview.Properties.Get("kubeconfig").IsComputed() {
		t.Errorf("the preview of a renewal shows kubeconfig %v, want unknown", preview.Properties.Get("kubeconfig"))
	}
	updated, err := s.Update(p.UpdateRequest{Urn: credentialsURN, State: state, Inputs: checked.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	if mustString(t, updated.Properties, "kubeconfig") == mustString(t, state, "kubeconfig") ||
		mustString(t, updated.Properties, "talosconfig") == mustString(t, state, "talosconfig") {
		t.Error("the update kept the old credentials")
	}
	if got, want := mustString(t, updated.Properties, "talosconfigNotAfter"), renewedAt.Add(CredentialsLifetime).UTC().Format(time.RFC3339); got != want {
		t.Errorf("renewed talosconfigNotAfter %s, want %s", got, want)
	}
	setClock(t, func() time.Time { return renewedAt })
	if d, _ := s.Diff(p.DiffRequest{Urn: credentialsURN, State: updated.Properties, Inputs: checked.Inputs}); d.HasChanges {
		t.Errorf("after the renewal: %v", d.DetailedDiff)
	}
}

func TestCredentialsCheckNamesTheInput(t *testing.T) {
	l := simtest.New(t)
	s := credentialsServer(t)
	in := credentialsInputs(l).Set("renewBefore", property.New("9000h"))
	resp, err := s.Check(p.CheckRequest{Urn: credentialsURN, Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range resp.Failures {
		got = append(got, f.Property+": "+f.Reason)
	}
	slices.Sort(got)
	if len(got) != 2 || !strings.HasPrefix(got[0], "endpoints: no endpoint") || !strings.Contains(got[1], `renewBefore: "9000h" is not shorter than`) {
		t.Errorf("failures %q", got)
	}
}

// The minted talosconfig is one talosctl reads and a node takes: a Version call answers.
func TestMintedTalosconfigIsTakenByANode(t *testing.T) {
	l := simtest.New(t)
	const address = "127.0.10.161"
	l.Configured(t, address, l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""))
	minted, err := mintCredentials(CredentialsArgs{ClusterName: l.Name, ClusterEndpoint: l.Endpoint, Endpoints: []string{address}, MachineSecrets: bundleSecrets(t, l.Bundle)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientconfig.FromString(minted.Talosconfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Context != l.Name || !slices.Equal(cfg.Contexts[l.Name].Endpoints, []string{address}) || len(cfg.Contexts[l.Name].Nodes) != 0 {
		t.Errorf("talosconfig context %q, endpoints %v, nodes %v", cfg.Context, cfg.Contexts[l.Name].Endpoints, cfg.Contexts[l.Name].Nodes)
	}
	c, err := client.New(context.Background(), client.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Version(client.WithNode(ctx, address))
	if err != nil {
		t.Fatalf("Version with the minted talosconfig: %v", err)
	}
	if got := v.Messages[0].Version.Tag; got != simtest.TalosVersion {
		t.Errorf("Version %s", got)
	}
	if crt := certificateOf(t, minted.TalosClientCertificate); !slices.Equal(crt.Subject.Organization, []string{"os:admin"}) {
		t.Errorf("talosconfig certificate O=%v", crt.Subject.Organization)
	}
}

// The minted kubeconfig is the Kubeconfig RPC's: its certificate chains to the Kubernetes CA with
// O=system:masters, CN=admin; cluster, user and context named as Talos names them.
func TestMintedKubeconfigChainsToTheKubernetesCA(t *testing.T) {
	l := simtest.New(t)
	minted, err := mintCredentials(CredentialsArgs{ClusterName: l.Name, ClusterEndpoint: l.Endpoint, Endpoints: []string{"127.0.10.161"}, MachineSecrets: bundleSecrets(t, l.Bundle)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal([]byte(minted.Kubeconfig), &kc); err != nil {
		t.Fatal(err)
	}
	if kc.CurrentContext != "admin@lab" || len(kc.Contexts) != 1 || kc.Contexts[0].Context.User != "admin@lab" || kc.Contexts[0].Context.Cluster != "lab" ||
		len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != simtest.LabEndpoint || len(kc.Users) != 1 || kc.Users[0].Name != "admin@lab" {
		t.Errorf("kubeconfig names: %+v", kc.Contexts)
	}
	if kc.Users[0].User.Cert != minted.KubernetesClientCertificate {
		t.Error("kubernetesClientCertificate is not the kubeconfig's")
	}
	crt := certificateOf(t, kc.Users[0].User.Cert)
	caPEM, _ := pem.Decode(l.Bundle.Certs.K8s.Crt)
	ca, err := stdx509.ParseCertificate(caPEM.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if base64.StdEncoding.EncodeToString(l.Bundle.Certs.K8s.Crt) != kc.Clusters[0].Cluster.CA {
		t.Error("the kubeconfig's certificate-authority-data is not the Kubernetes CA")
	}
	roots := stdx509.NewCertPool()
	roots.AddCert(ca)
	if _, err := crt.Verify(stdx509.VerifyOptions{Roots: roots, KeyUsages: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the kubeconfig's certificate does not chain to the Kubernetes CA: %v", err)
	}
	if !slices.Equal(crt.Subject.Organization, []string{"system:masters"}) || crt.Subject.CommonName != "admin" {
		t.Errorf("subject %s", crt.Subject)
	}
	if osCA, _ := pem.Decode(l.Bundle.Certs.OS.Crt); osCA != nil {
		other, _ := stdx509.ParseCertificate(osCA.Bytes)
		pool := stdx509.NewCertPool()
		pool.AddCert(other)
		if _, err := crt.Verify(stdx509.VerifyOptions{Roots: pool, KeyUsages: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}}); err == nil {
			t.Error("the kubeconfig's certificate chains to the Talos CA")
		}
	}
}

func bundleSecrets(t *testing.T, b *secrets.Bundle) MachineSecrets {
	t.Helper()
	e := base64.StdEncoding.EncodeToString
	var s MachineSecrets
	s.Certs.Os = SecretsCertPair{Cert: e(b.Certs.OS.Crt), Key: e(b.Certs.OS.Key)}
	s.Certs.K8s = SecretsCertPair{Cert: e(b.Certs.K8s.Crt), Key: e(b.Certs.K8s.Key)}
	return s
}
