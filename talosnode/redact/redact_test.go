package redact_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	yaml "go.yaml.in/yaml/v4"

	"talos-cluster/talosnode/redact"
)

// generated is a control plane config made by machinery from a fresh secrets bundle, with a
// strategic merge patch on its v1alpha1 document and extra documents appended.
func generated(t *testing.T, bundle *secrets.Bundle, patch, documents string) []byte {
	t.Helper()
	// The contract of the Talos release the nodes run (v1.11.5).
	in, err := generate.NewInput("lab", "https://10.0.0.1:6443", "1.34.1", generate.WithSecretsBundle(bundle), generate.WithVersionContract(config.TalosVersion1_11))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := in.Config(talosmachine.TypeControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	out := configpatcher.WithConfig(cfg)
	if patch != "" {
		p, err := configpatcher.LoadPatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		if out, err = configpatcher.Apply(out, []configpatcher.Patch{p}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if documents != "" {
		data = append(append(data, "---\n"...), documents...)
	}
	return data
}

func newBundle(t *testing.T) *secrets.Bundle {
	t.Helper()
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	if err != nil {
		t.Fatal(err)
	}
	return bundle
}

func mustRedact(t *testing.T, data []byte) redact.Config {
	t.Helper()
	cfg, err := redact.FromYAML(data)
	if err != nil {
		t.Fatalf("redact: %v", err)
	}
	return cfg
}

// Secrets a stack may add in patches and documents: every place Talos' config types keep one,
// and some a user's patch may add. Each value is unique, so a leak names its field.
const secretPatch = `machine:
  registries:
    config:
      registry.example.com:
        auth:
          username: robot
          password: registry-password-1
          auth: cmVnaXN0cnktYXV0aC0y
          identityToken: registry-identity-token-3
  systemDiskEncryption:
    state:
      provider: luks2
      keys:
        - slot: 0
          static:
            passphrase: disk-passphrase-4
  env:
    https_proxy: http://proxyuser:proxy-password-5@proxy.example.com:3128
  files:
    - path: /var/etc/creds.conf
      permissions: 0o600
      op: create
      content: |
        user = bob
        password = file-password-6
        -----BEGIN EC PRIVATE KEY-----
        ZmlsZS1wcml2YXRlLWtleS03
        -----END EC PRIVATE KEY-----
  network:
    interfaces:
      - interface: wg0
        wireguard:
          privateKey: wireguard-private-key-8
          peers:
            - publicKey: wireguard-public-key
              endpoint: 192.0.2.1:51820
              allowedIPs: [10.1.0.0/24]
  install:
    extraKernelArgs:
      - siderolink.api=https://siderolink.example.com:443?jointoken=join-token-9
cluster:
  # Bundles since Talos 1.7 hold only a secretbox secret; older clusters carry this one.
  aescbcEncryptionSecret: aescbc-encryption-secret-18
  extraManifestHeaders:
    Authorization: Bearer header-token-10
  inlineManifests:
    - name: creds
      contents: |
        apiVersion: v1
        kind: Secret
        metadata:
          name: creds
        stringData:
          anything: inline-secret-11
  apiServer:
    extraArgs:
      oidc-client-secret: oidc-secret-12
`

const secretDocuments = `apiVersion: v1alpha1
kind: RegistryAuthConfig
name: ghcr.io
username: robot2
password: document-registry-password-13
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
encryption:
  provider: luks2
  keys:
    - slot: 0
      static:
        passphrase: volume-passphrase-14
---
apiVersion: v1alpha1
kind: WireguardConfig
name: wg1
privateKey: document-wireguard-private-key-15
peers:
  - publicKey: document-wireguard-public-key
    presharedKey: document-wireguard-preshared-key-16
    endpoint: 192.0.2.2:51820
    allowedIPs: [10.2.0.0/24]
---
apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: https://siderolink.example.com:443?jointoken=document-join-token-17
`

func TestRedactionHidesEverySecretOfAGeneratedConfig(t *testing.T) {
	bundle := newBundle(t)
	data := generated(t, bundle, secretPatch, secretDocuments)
	cfg := mustRedact(t, data)

	secretValues := map[string]string{
		"machine.token (trustd)":            bundle.TrustdInfo.Token,
		"cluster.token (bootstrap)":         bundle.Secrets.BootstrapToken,
		"cluster.secret":                    bundle.Cluster.Secret,
		"secretboxEncryptionSecret":         bundle.Secrets.SecretboxEncryptionSecret,
		"aescbcEncryptionSecret":            "aescbc-encryption-secret-18",
		"machine.ca.key":                    string(bundle.Certs.OS.Key),
		"cluster.ca.key":                    string(bundle.Certs.K8s.Key),
		"cluster.aggregatorCA.key":          string(bundle.Certs.K8sAggregator.Key),
		"cluster.serviceAccount.key":        string(bundle.Certs.K8sServiceAccount.Key),
		"cluster.etcd.ca.key":               string(bundle.Certs.Etcd.Key),
		"registry auth password":            "registry-password-1",
		"registry auth auth":                "cmVnaXN0cnktYXV0aC0y",
		"registry auth identityToken":       "registry-identity-token-3",
		"disk encryption passphrase":        "disk-passphrase-4",
		"password in a proxy URL":           "proxy-password-5",
		"password line in a file":           "file-password-6",
		"private key in a file":             "ZmlsZS1wcml2YXRlLWtleS03",
		"wireguard privateKey":              "wireguard-private-key-8",
		"siderolink jointoken":              "join-token-9",
		"Authorization header":              "header-token-10",
		"inline manifest Secret":            "inline-secret-11",
		"extraArgs oidc-client-secret":      "oidc-secret-12",
		"RegistryAuthConfig password":       "document-registry-password-13",
		"VolumeConfig passphrase":           "volume-passphrase-14",
		"WireguardConfig privateKey":        "document-wireguard-private-key-15",
		"WireguardConfig presharedKey":      "document-wireguard-preshared-key-16",
		"SideroLinkConfig apiUrl jointoken": "document-join-token-17",
	}
	for field, value := range secretValues {
		if value == "" {
			t.Errorf("%s: the bundle has no value to look for", field)
			continue
		}
		// Talos keeps keys as base64 of the PEM; look for both forms, and for the key's body.
		forms := []string{value, base64.StdEncoding.EncodeToString([]byte(value))}
		if lines := strings.Split(strings.TrimSpace(value), "\n"); len(lines) > 2 {
			forms = append(forms, lines[1])
		}
		for _, form := range forms {
			if strings.Contains(cfg.Redacted, form) {
				t.Errorf("%s: its value appears in the redacted config", field)
			}
		}
	}

	// What a review needs stays: certificates, public keys, names, images, hosts.
	for what, value := range map[string]string{
		"machine.ca.crt":          base64.StdEncoding.EncodeToString(bundle.Certs.OS.Crt),
		"cluster.ca.crt":          base64.StdEncoding.EncodeToString(bundle.Certs.K8s.Crt),
		"wireguard publicKey":     "wireguard-public-key",
		"document publicKey":      "document-wireguard-public-key",
		"proxy host and user":     "http://proxyuser:(redacted)@proxy.example.com:3128",
		"file's other lines":      "user = bob",
		"cluster name":            "clusterName: lab",
		"registry document name":  "name: ghcr.io",
		"siderolink host":         "https://siderolink.example.com:443?jointoken=(redacted)",
		"the marker for a secret": "token: " + redact.Marker,
	} {
		if !strings.Contains(cfg.Redacted, value) {
			t.Errorf("%s: %q is missing from the redacted config", what, value)
		}
	}
	if t.Failed() {
		t.Logf("redacted config:\n%s", cfg.Redacted)
	}
}

func TestTheSecretFieldsTalosRedactsAreMarked(t *testing.T) {
	cfg := mustRedact(t, generated(t, newBundle(t), "", ""))
	var doc struct {
		Machine struct {
			Token string
			CA    struct{ Crt, Key string }
		}
		Cluster struct {
			Token                     string
			Secret                    string
			SecretboxEncryptionSecret string `yaml:"secretboxEncryptionSecret"`
			CA                        struct{ Key string }
			AggregatorCA              struct{ Key string } `yaml:"aggregatorCA"`
			ServiceAccount            struct{ Key string } `yaml:"serviceAccount"`
			Etcd                      struct{ CA struct{ Key string } }
		}
	}
	if err := yaml.Unmarshal([]byte(cfg.Redacted), &doc); err != nil {
		t.Fatal(err)
	}
	for field, value := range map[string]string{
		"machine.token":                     doc.Machine.Token,
		"machine.ca.key":                    doc.Machine.CA.Key,
		"cluster.token":                     doc.Cluster.Token,
		"cluster.secret":                    doc.Cluster.Secret,
		"cluster.secretboxEncryptionSecret": doc.Cluster.SecretboxEncryptionSecret,
		"cluster.ca.key":                    doc.Cluster.CA.Key,
		"cluster.aggregatorCA.key":          doc.Cluster.AggregatorCA.Key,
		"cluster.serviceAccount.key":        doc.Cluster.ServiceAccount.Key,
		"cluster.etcd.ca.key":               doc.Cluster.Etcd.CA.Key,
	} {
		if value != redact.Marker {
			t.Errorf("%s = %q, want %q", field, value, redact.Marker)
		}
	}
	if doc.Machine.CA.Crt == "" || doc.Machine.CA.Crt == redact.Marker {
		t.Errorf("machine.ca.crt = %q, want the certificate", doc.Machine.CA.Crt)
	}
}

// reordered is the same config written differently: every mapping's keys reversed, a comment,
// other indentation.
func reordered(t *testing.T, data []byte) []byte {
	t.Helper()
	var docs []string
	for _, part := range strings.Split(string(data), "\n---\n") {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(part), &n); err != nil {
			t.Fatal(err)
		}
		reverse(&n)
		n.HeadComment = "written by hand"
		out, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(out))
	}
	return []byte(strings.Join(docs, "---\n"))
}

func reverse(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		pairs := len(n.Content) / 2
		for i := 0; i < pairs/2; i++ {
			a, b := 2*i, 2*(pairs-1-i)
			n.Content[a], n.Content[b] = n.Content[b], n.Content[a]
			n.Content[a+1], n.Content[b+1] = n.Content[b+1], n.Content[a+1]
		}
	}
	for _, c := range n.Content {
		reverse(c)
	}
}

func TestTheHash(t *testing.T) {
	bundle := newBundle(t)
	base := generated(t, bundle, "", "")
	other := *bundle
	otherCluster := *bundle.Cluster
	otherCluster.Secret = base64.StdEncoding.EncodeToString([]byte("another cluster secret, 32 bytes"))
	other.Cluster = &otherCluster

	for _, tc := range []struct {
		name         string
		data         []byte
		sameHash     bool
		sameRedacted bool
	}{
		{"the same config", generated(t, bundle, "", ""), true, true},
		{"reordered keys, comments and indentation", reordered(t, base), true, true},
		{"a changed secret value", generated(t, &other, "", ""), false, true},
		{"a changed setting", generated(t, bundle, "machine:\n  install:\n    image: ghcr.io/siderolabs/installer:v1.10.7\n", ""), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mustRedact(t, base), mustRedact(t, tc.data)
			if (a.Hash == b.Hash) != tc.sameHash {
				t.Errorf("same hash: %t, want %t", a.Hash == b.Hash, tc.sameHash)
			}
			if (a.Redacted == b.Redacted) != tc.sameRedacted {
				t.Errorf("same redacted text: %t, want %t", a.Redacted == b.Redacted, tc.sameRedacted)
			}
			if len(b.Hash) != 64 {
				t.Errorf("hash %q is not sha256 hex", b.Hash)
			}
		})
	}
}

func TestAConfigMachineryCannotDecodeIsAnError(t *testing.T) {
	for name, data := range map[string]string{
		"empty":        "",
		"not YAML":     "machine: [unclosed",
		"unknown kind": "apiVersion: v1alpha1\nkind: NoSuchConfig\nname: x\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := redact.FromYAML([]byte(data)); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestSecretKey(t *testing.T) {
	for key, secret := range map[string]bool{
		"key": true, "privateKey": true, "clientKey": true, "presharedKey": true, "private_key": true,
		"token": true, "identityToken": true, "jointoken": true, "secret": true, "aescbcEncryptionSecret": true,
		"password": true, "passphrase": true, "auth": true, "Authorization": true, "credentials": true,
		"apiKey": true, "AWS_SECRET_ACCESS_KEY": true,
		"crt": false, "publicKey": false, "keys": false, "keySize": false, "adUserPortKey": false,
		"name": false, "image": false, "author": false, "authorizationConfig": false, "": false,
	} {
		if got := redact.SecretKey(key); got != secret {
			t.Errorf("SecretKey(%q) = %t, want %t", key, got, secret)
		}
	}
}

func TestErrorTextKeepsKeysNotValues(t *testing.T) {
	_, err := redact.FromYAML([]byte("version: v1alpha1\nmachine:\n  type: controlplane\n  install:\n    pasword: typo-secret-value\n"))
	if err == nil {
		t.Fatal("an unknown key decoded")
	}
	text := redact.ErrorText(err)
	if strings.Contains(text, "typo-secret-value") || !strings.Contains(text, "pasword:") {
		t.Fatalf("got %q (from %q)", text, err)
	}
}

// Talos 1.14's config contract moves the Kubernetes section into documents of their own
// (config/types/k8s: KubeAPIServerCAConfig, KubeAggregatorCAConfig, KubeServiceAccountConfig, ...),
// with the CA keys in them: a config rendered for a cluster created on 1.14 must hide them too.
func TestRedactionHidesTheCAKeysOfTalos114Documents(t *testing.T) {
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_14)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput("lab", "https://10.0.0.1:6443", "1.37.0", generate.WithSecretsBundle(bundle), generate.WithVersionContract(config.TalosVersion1_14))
	if err != nil {
		t.Fatal(err)
	}
	c, err := in.Config(talosmachine.TypeControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"kind: KubeAPIServerCAConfig", "kind: KubeAggregatorCAConfig", "kind: KubeServiceAccountConfig"} {
		if !strings.Contains(string(data), kind) {
			t.Fatalf("the 1.14 contract no longer renders %q: this test no longer covers those documents", kind)
		}
	}
	cfg := mustRedact(t, data)
	for field, value := range map[string]string{
		"API server CA key":     string(bundle.Certs.K8s.Key),
		"aggregator CA key":     string(bundle.Certs.K8sAggregator.Key),
		"service account key":   string(bundle.Certs.K8sServiceAccount.Key),
		"OS CA key":             string(bundle.Certs.OS.Key),
		"etcd CA key":           string(bundle.Certs.Etcd.Key),
		"bootstrap token":       bundle.Secrets.BootstrapToken,
		"secretbox encryption":  bundle.Secrets.SecretboxEncryptionSecret,
		"trustd token":          bundle.TrustdInfo.Token,
		"cluster discovery key": bundle.Cluster.Secret,
	} {
		forms := []string{value, base64.StdEncoding.EncodeToString([]byte(value))}
		if lines := strings.Split(strings.TrimSpace(value), "\n"); len(lines) > 2 {
			forms = append(forms, lines[1])
		}
		for _, form := range forms {
			if form != "" && strings.Contains(cfg.Redacted, form) {
				t.Errorf("%s: its value appears in the redacted 1.14 config", field)
			}
		}
	}
	// The documents carry the certificate as PEM (v1alpha1 carried base64 of the PEM).
	if crt := strings.Split(string(bundle.Certs.K8s.Crt), "\n")[1]; !strings.Contains(cfg.Redacted, crt) {
		t.Error("the API server CA certificate, which a review needs, is gone")
	}
	if t.Failed() {
		t.Logf("redacted config:\n%s", cfg.Redacted)
	}
}
