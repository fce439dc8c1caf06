package judge

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
)

// testSecrets are real machine secrets in the plugin's form (base64 PEM), made once.
var testSecrets = func() Secrets {
	b, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), coreconfig.TalosVersion1_6)
	if err != nil {
		panic(err)
	}
	enc := func(p []byte) string { return base64.StdEncoding.EncodeToString(p) }
	c := b.Certs
	return Secrets{
		ClusterID: b.Cluster.ID, ClusterSecret: b.Cluster.Secret,
		BootstrapToken: b.Secrets.BootstrapToken, SecretboxEncryptionSecret: b.Secrets.SecretboxEncryptionSecret,
		AESCBCEncryptionSecret: b.Secrets.AESCBCEncryptionSecret, TrustdToken: b.TrustdInfo.Token,
		EtcdCert: enc(c.Etcd.Crt), EtcdKey: enc(c.Etcd.Key), K8sCert: enc(c.K8s.Crt), K8sKey: enc(c.K8s.Key),
		K8sAggregatorCert: enc(c.K8sAggregator.Crt), K8sAggregatorKey: enc(c.K8sAggregator.Key),
		K8sServiceAccountKey: enc(c.K8sServiceAccount.Key), OSCert: enc(c.OS.Crt), OSKey: enc(c.OS.Key),
	}
}()

func renderInput(role, contract string, patches ...Patch) RenderInput {
	return RenderInput{
		Node: "cp-1", Role: role, ClusterName: "lab", Endpoint: "https://10.0.0.10:6443",
		Contract: contract, KubernetesVersion: "1.34.1", Secrets: testSecrets, Patches: patches,
	}
}

func load(t *testing.T, text string) coreconfig.Provider {
	t.Helper()
	cfg, err := configloader.NewFromBytes([]byte(text))
	if err != nil {
		t.Fatalf("the rendered config does not load: %v\n%s", err, text)
	}
	return cfg
}

func TestRenderUsesTheSecretsContractAndKubernetesVersion(t *testing.T) {
	out, _, err := Render(renderInput("controlplane", "v1.11.5"))
	if err != nil {
		t.Fatal(err)
	}
	raw := load(t, out).RawV1Alpha1()
	if got := raw.ClusterConfig.ClusterID; got != testSecrets.ClusterID {
		t.Errorf("cluster id: want the secrets' %q, got %q", testSecrets.ClusterID, got)
	}
	if got := raw.MachineConfig.MachineToken; got != testSecrets.TrustdToken {
		t.Errorf("machine token: want the secrets' trustd token, got %q", got)
	}
	if !strings.Contains(out, "kube-apiserver:v1.34.1") {
		t.Errorf("the config does not run kube-apiserver 1.34.1:\n%s", out)
	}
	// No docs or examples: the plugin's call had them off.
	if strings.Contains(out, "#") {
		t.Errorf("the config carries comments:\n%s", out)
	}
	// The contract decides what is generated: 1.12 turned on grubUseUKICmdline by default, a
	// 1.11 cluster's configs stay without it.
	if strings.Contains(out, "grubUseUKICmdline") {
		t.Errorf("contract v1.11.5 rendered a 1.12 default (grubUseUKICmdline)")
	}
	newer, _, err := Render(renderInput("controlplane", "v1.12.0"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(newer, "grubUseUKICmdline: true") {
		t.Errorf("contract v1.12.0 did not render grubUseUKICmdline: true")
	}
}

func TestRenderAppliesPatchesInOrder(t *testing.T) {
	out, _, err := Render(renderInput("worker", "v1.11.5",
		Patch{Key: "talos-cluster:patches.all[0]", Patch: `{"machine":{"env":{"A":"all"},"kubelet":{"extraArgs":{"v":"1"}}}}`},
		Patch{Key: "talos-cluster:patches.worker[0]", Patch: `{"machine":{"env":{"A":"worker","B":"worker"}}}`},
		Patch{Key: "talos-cluster:nodes[0].patches[0]", Patch: "machine:\n  env:\n    B: node\n"},
	))
	if err != nil {
		t.Fatal(err)
	}
	env := load(t, out).Machine().Env()
	if env["A"] != "worker" || env["B"] != "node" {
		t.Errorf("later patches must win: want A=worker B=node, got %v", env)
	}
	if !strings.Contains(out, "v: \"1\"") {
		t.Errorf("the first patch's kubelet arg is missing:\n%s", out)
	}
}

func TestRenderRefusesNamingTheKeyAsTalosvalidateDoes(t *testing.T) {
	patches := []Patch{
		{Key: "talos-cluster:patches.all[0]", Patch: `{"machine":{"certSANs":["10.0.0.10"]}}`},
		{Key: "talos-cluster:patches.all[1]", Patch: `{"machine":{"tyme":{}}}`},
	}
	_, _, err := Render(renderInput("controlplane", "v1.11.5", patches...))
	var refused *RenderError
	if !errors.As(err, &refused) {
		t.Fatalf("want a RenderError, got %v", err)
	}
	report, jerr := Judge(Input{ClusterName: "lab", Endpoint: "https://10.0.0.10:6443", TalosVersion: "v1.11.5",
		KubernetesVersion: "1.34.1", Nodes: []Node{{Name: "cp-1", Role: "controlplane", Patches: patches}}})
	if jerr != nil || len(report.Problems) != 1 {
		t.Fatalf("talosvalidate's judgement: %v %+v", jerr, report)
	}
	want := report.Problems[0].Key + ": " + report.Problems[0].Message
	if len(refused.Problems) != 1 || refused.Problems[0] != want {
		t.Errorf("want talosvalidate's finding %q, got %q", want, refused.Problems)
	}
	if !strings.Contains(err.Error(), "cp-1") || !strings.Contains(err.Error(), "talos-cluster:patches.all[1]: unknown key machine.tyme") {
		t.Errorf("the error must name the node and the key: %v", err)
	}
}

func TestRenderKeepsSecretsOutOfMessages(t *testing.T) {
	// A JSON patch copying the cluster secret into a label Talos quotes when it refuses it.
	secret := testSecrets.ClusterSecret
	_, _, err := Render(renderInput("controlplane", "v1.11.5",
		Patch{Key: "talos-cluster:patches.all[0]", Patch: `{"machine":{"nodeLabels":{"a":"` + secret + `/x"}}}`}))
	if err == nil {
		t.Fatal("an invalid label must be refused")
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:8]) {
		t.Errorf("the message gives the secret away: %v", err)
	}

	bad := testSecrets
	bad.OSKey = "not base64 " + secret
	_, _, err = Render(renderInput("controlplane", "v1.11.5"))
	if err != nil {
		t.Fatal(err)
	}
	in := renderInput("controlplane", "v1.11.5")
	in.Secrets = bad
	_, _, err = Render(in)
	if err == nil || !strings.Contains(err.Error(), "certs.os.key") {
		t.Fatalf("want the bad field named, got %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the message gives the secret away: %v", err)
	}
}

func TestRenderRefusesInputItCannotRender(t *testing.T) {
	for name, mod := range map[string]func(*RenderInput){
		"contract":   func(in *RenderInput) { in.Contract = "latest" },
		"kubernetes": func(in *RenderInput) { in.KubernetesVersion = "1.34" },
		"role":       func(in *RenderInput) { in.Role = "init" },
		"key":        func(in *RenderInput) { in.Patches = []Patch{{Patch: "{}"}} },
	} {
		in := renderInput("controlplane", "v1.11.5")
		mod(&in)
		if _, _, err := Render(in); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// The talos plugin's library wrote with go-yaml v3, which double-quotes a string that would
// read back as another type; go-yaml v4 before v4.0.0 single-quoted it under the same options,
// which changes the bytes of every config carrying one (a PCI busPath), so every such node
// would be re-applied by the next up. The render must write what the plugin wrote.
func TestRenderQuotesAsThePluginDid(t *testing.T) {
	out, _, err := Render(renderInput("controlplane", "v1.11.5", Patch{Key: "k",
		Patch: `{"machine":{"network":{"interfaces":[{"deviceSelector":{"busPath":"0000:01:00.0"},"dhcp":true}]}}}`}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `busPath: "0000:01:00.0"`) {
		t.Errorf("want the plugin's double quotes around the busPath:\n%s", out)
	}
}
