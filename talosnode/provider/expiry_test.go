package provider_test

import (
	"context"
	stdx509 "crypto/x509"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/role"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/provider"
)

// expiredClientConfiguration is the stack's clientConfiguration a year and a day after the
// secrets were made: an os:admin certificate of the cluster's machine CA whose not-after passed
// yesterday. Its not-after is returned as the error must name it.
func expiredClientConfiguration(t *testing.T, l *simtest.Cluster) (property.Value, time.Time) {
	t.Helper()
	ca, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(l.Bundle.Certs.OS)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	pair, err := talosx509.NewKeyPair(ca,
		talosx509.Organization(string(role.Admin)),
		talosx509.NotBefore(notAfter.Add(-365*24*time.Hour)),
		talosx509.NotAfter(notAfter),
		talosx509.KeyUsage(stdx509.KeyUsageDigitalSignature),
		talosx509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}),
	)
	if err != nil {
		t.Fatal(err)
	}
	cert := talosx509.NewCertificateAndKeyFromKeyPair(pair)
	enc := base64.StdEncoding.EncodeToString
	return property.New(map[string]property.Value{
		"caCertificate":     property.New(enc(l.Bundle.Certs.OS.Crt)),
		"clientCertificate": property.New(enc(cert.Crt)),
		"clientKey":         property.New(enc(cert.Key)).WithSecret(true),
	}).WithSecret(true), notAfter
}

// expiryNamed says whether err is the refusal of the stored certificate, naming its not-after
// and the way out, at once rather than after a wait for a node that "does not answer".
func expiryNamed(err error, notAfter time.Time) bool {
	return err != nil && strings.Contains(err.Error(), "client certificate: expired on "+notAfter.UTC().Format(time.RFC3339)+" (O=os:admin)") &&
		strings.Contains(err.Error(), "machineSecrets") && !strings.Contains(err.Error(), "not answering")
}

// TestAnExpiredStoredCertificateLocksNodeStateOutUnlessItHasTheMachineSecrets: the stack's client
// certificate expired (a year after the secrets were made). Without machineSecrets a create or
// refresh fails at once naming the expiry; with them the provider mints its own certificate from
// the Talos CA, so create, refresh and the preview's diff work, and nothing minted is recorded.
func TestAnExpiredStoredCertificateLocksNodeStateOutUnlessItHasTheMachineSecrets(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	const address = "127.0.10.151"
	l.Configured(t, address, config)
	expired, notAfter := expiredClientConfiguration(t, l)
	inputs := declared(l, address, config, "20s").Set("clientConfiguration", expired)

	s := server(t)
	checked := check(t, s, "cp-1", inputs)
	if _, err := s.Create(p.CreateRequest{Urn: urn("cp-1"), Properties: checked.Inputs}); !expiryNamed(err, notAfter) {
		t.Fatalf("create with the expired certificate alone: %v; want the expiry named", err)
	}

	lc := createFrom(t, "cp-1", inputs.Set("machineSecrets", secretsValue(l.Bundle)))
	if _, err := lc.refresh(t); err != nil {
		t.Fatalf("refresh with the machine secrets: %v", err)
	}
	if d := lc.diff(t); d.HasChanges {
		t.Errorf("the preview after the refresh shows changes: %v", d.DetailedDiff)
	}
	if got := lc.state.Get("runningTalosVersion"); !got.IsString() || got.AsString() != simtest.TalosVersion {
		t.Errorf("runningTalosVersion %v after the refresh", got)
	}
	if _, ok := lc.state.GetOk("machineSecrets"); ok {
		t.Error("the outputs hold machineSecrets; they are kept among the inputs only")
	}
	if got := lc.state.Get("clientConfiguration"); !got.Equals(lc.program.Get("clientConfiguration")) || !got.Secret() {
		t.Errorf("the recorded clientConfiguration is not the stack's (a minted certificate reached the state?)")
	}

	// The refresh of the state recorded with the certificate alone: the same refusal.
	stale := &lifecycle{s: lc.s, name: "cp-1", program: checked.Inputs, id: lc.id, state: lc.state}
	if _, err := stale.refresh(t); !expiryNamed(err, notAfter) {
		t.Errorf("refresh with the expired certificate alone: %v; want the expiry named", err)
	}
}

// TestGivingMachineSecretsToAnExistingStackIsNoChange: a stack recorded before the input existed
// (or whose secrets are renewed) shows no change when the program adds it.
func TestGivingMachineSecretsToAnExistingStackIsNoChange(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	const address = "127.0.10.154"
	l.Configured(t, address, config)
	lc := create(t, l, address, config, "20s")
	lc.program = check(t, lc.s, "cp-1", declared(l, address, config, "20s").Set("machineSecrets", secretsValue(l.Bundle))).Inputs
	if d := lc.diff(t); d.HasChanges || len(d.DetailedDiff) > 0 {
		t.Errorf("NodeState: adding machineSecrets shows %v", d.DetailedDiff)
	}

	rl := newRolloutLab(t, "127.0.10.155", "127.0.10.156")
	program := rl.inputs(t, "auto")
	rlc := createRollout(t, program)
	checked, err := rlc.s.Check(p.CheckRequest{Urn: rolloutURN("lab-rollout"), Inputs: program.Set("machineSecrets", secretsValue(rl.lab.Bundle))})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", err, checked.Failures)
	}
	rlc.program = checked.Inputs
	if changed, keys := rlc.refreshDiff(t); changed || len(keys) > 0 {
		t.Errorf("Rollout: adding machineSecrets shows %v", keys)
	}
}

// TestARolloutWithAnExpiredStoredCertificateRunsOnTheMachineSecrets: a config change rolls out
// with the stored certificate expired when the Rollout has the machine secrets (preview and
// update), and is refused before anything changes, naming the expiry, without them.
func TestARolloutWithAnExpiredStoredCertificateRunsOnTheMachineSecrets(t *testing.T) {
	rl := newRolloutLab(t, "127.0.10.152", "127.0.10.153")
	expired, notAfter := expiredClientConfiguration(t, rl.lab)
	withSecrets := func() property.Map {
		return rl.inputs(t, "auto").Set("clientConfiguration", expired).Set("machineSecrets", secretsValue(rl.lab.Bundle))
	}
	lc := createRollout(t, withSecrets())
	if changed, keys := lc.refreshDiff(t); changed {
		t.Fatalf("a refresh of a cluster as declared shows changes: %v", keys)
	}

	before := rl.configs[0]
	rl.configs[0] = rl.lab.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  sysctls:\n    vm.max_map_count: \"262144\"\n")
	checkOf := func(inputs property.Map) property.Map {
		checked, err := lc.s.Check(p.CheckRequest{Urn: rolloutURN("lab-rollout"), Inputs: inputs})
		if err != nil || len(checked.Failures) > 0 {
			t.Fatalf("check: %v %v", err, checked.Failures)
		}
		return checked.Inputs
	}

	alone := checkOf(rl.inputs(t, "auto").Set("clientConfiguration", expired))
	_, err := lc.s.Update(p.UpdateRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), State: lc.state, Inputs: alone})
	if !expiryNamed(err, notAfter) {
		t.Fatalf("update with the expired certificate alone: %v; want the expiry named", err)
	}
	if s := rl.cp.State(); s.Config != string(before) {
		t.Fatal("the refused update changed cp-1")
	}

	lc.program = checkOf(withSecrets())
	if _, err := lc.s.Update(p.UpdateRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), State: lc.state, Inputs: lc.program, DryRun: true}); err != nil {
		t.Fatalf("preview: %v", err)
	}
	if changes := lc.update(t); strings.Join(changes, "; ") != "cp-1: config" {
		t.Errorf("changes %q", changes)
	}
	if s := rl.cp.State(); s.Config != string(rl.configs[0]) {
		t.Error("cp-1 does not carry the declared config after the update")
	}
	if _, ok := lc.state.GetOk("machineSecrets"); ok {
		t.Error("the outputs hold machineSecrets; they are kept among the inputs only")
	}
	if changed, keys := lc.refreshDiff(t); changed {
		t.Errorf("a refresh after the update shows changes: %v", keys)
	}
}

// TestTheDriftJobsReaderIsMintedFromTheMachineSecrets: with TALOSNODE_READ_ROLES=os:reader the
// refresh reads with an os:reader certificate minted from the machine secrets (the stored client
// certificate is expired, so nothing else could answer): the release drift shows, the config is
// left uncompared as Talos refuses a reader the MachineConfig. A role Talos does not know, or no
// machine secrets to mint from, fails the refresh naming the variable.
func TestTheDriftJobsReaderIsMintedFromTheMachineSecrets(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	const address = "127.0.10.152"
	sim := l.Configured(t, address, config)
	expired, _ := expiredClientConfiguration(t, l)
	lc := createFrom(t, "cp-1", declared(l, address, config, "20s").Set("clientConfiguration", expired).Set("machineSecrets", secretsValue(l.Bundle)))
	if err := sim.Set(context.Background(), simnode.Change{
		TalosVersion: "v1.11.4",
		ConfigPatch:  "machine:\n  sysctls:\n    vm.max_map_count: \"262144\"\n",
	}); err != nil {
		t.Fatal(err)
	}

	t.Setenv(provider.ReadRolesEnv, "os:reader")
	if _, err := lc.refresh(t); err != nil {
		t.Fatalf("refresh with a minted os:reader certificate: %v", err)
	}
	if got, want := diffFields(lc.diff(t)), []string{"talosVersion"}; !slices.Equal(got, want) {
		t.Errorf("diff with os:reader: %v, want %v (the config is not compared)", got, want)
	}

	t.Setenv(provider.ReadRolesEnv, "os:boss")
	if _, err := lc.refresh(t); err == nil || !strings.Contains(err.Error(), "TALOSNODE_READ_ROLES=os:boss: unknown roles os:boss") {
		t.Errorf("refresh with an unknown role: %v", err)
	}
	t.Setenv(provider.ReadRolesEnv, "os:reader")
	bare := &lifecycle{s: lc.s, name: "cp-1", program: lc.program.Delete("machineSecrets"), id: lc.id, state: lc.state}
	if _, err := bare.refresh(t); err == nil || !strings.Contains(err.Error(), "has no machineSecrets to mint the certificate from") {
		t.Errorf("refresh without machine secrets: %v", err)
	}
}
