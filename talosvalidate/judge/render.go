package judge

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
)

// Secrets are a cluster's machine secrets as the talos plugin's machine.Secrets keeps them
// (its machineSecrets output): certificates and keys as base64 PEM. The bundle they stand for has
// the same form in the plugin's library (v1.9.2) and this one (config/generate/secrets).
type Secrets struct {
	ClusterID, ClusterSecret                          string
	BootstrapToken                                    string
	SecretboxEncryptionSecret, AESCBCEncryptionSecret string
	TrustdToken                                       string
	EtcdCert, EtcdKey, K8sCert, K8sKey                string
	K8sAggregatorCert, K8sAggregatorKey               string
	K8sServiceAccountKey                              string
	OSCert, OSKey                                     string
}

// bundle turns the secrets into Talos' bundle as the plugin does (machine configuration data
// source: an AES-CBC secret only when there is one, a fixed clock). A field that is not base64
// is named; its value never is.
func (s Secrets) bundle() (*secrets.Bundle, error) {
	var bad []string
	decode := func(field, value string) []byte {
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil || len(b) == 0 {
			bad = append(bad, field)
		}
		return b
	}
	pair := func(field, crt, key string) *x509.PEMEncodedCertificateAndKey {
		return &x509.PEMEncodedCertificateAndKey{Crt: decode(field+".cert", crt), Key: decode(field+".key", key)}
	}
	b := &secrets.Bundle{
		Clock:      secrets.NewFixedClock(time.Now()),
		Cluster:    &secrets.Cluster{ID: s.ClusterID, Secret: s.ClusterSecret},
		Secrets:    &secrets.Secrets{BootstrapToken: s.BootstrapToken, SecretboxEncryptionSecret: s.SecretboxEncryptionSecret, AESCBCEncryptionSecret: s.AESCBCEncryptionSecret},
		TrustdInfo: &secrets.TrustdInfo{Token: s.TrustdToken},
		Certs: &secrets.Certs{
			Etcd:              pair("certs.etcd", s.EtcdCert, s.EtcdKey),
			K8s:               pair("certs.k8s", s.K8sCert, s.K8sKey),
			K8sAggregator:     pair("certs.k8sAggregator", s.K8sAggregatorCert, s.K8sAggregatorKey),
			K8sServiceAccount: &x509.PEMEncodedKey{Key: decode("certs.k8sServiceaccount.key", s.K8sServiceAccountKey)},
			OS:                pair("certs.os", s.OSCert, s.OSKey),
		},
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("machineSecrets: %s not base64 PEM; pass the machineSecrets output of talos.machine.Secrets unchanged", strings.Join(bad, ", "))
	}
	return b, nil
}

// RenderInput is one node's machine config as the program declares it.
type RenderInput struct {
	// Node names the node in messages.
	Node        string
	Role        string
	ClusterName string
	Endpoint    string
	// Contract is the config contract: the Talos release the cluster was created with.
	Contract          string
	KubernetesVersion string
	Secrets           Secrets
	// Patches in the plan's order, each with the stack key a problem is blamed on.
	Patches []Patch
}

// RenderError is a config Talos would refuse: every problem, each led by the key it is blamed on
// (the messages talosvalidate reports for the same patches).
type RenderError struct {
	Node     string
	Problems []string
}

func (e *RenderError) Error() string {
	return fmt.Sprintf("Talos refuses the machine config of %s: %s", e.Node, strings.Join(e.Problems, "; "))
}

// Render makes one node's machine config as the cluster applies it: generated from the cluster's
// machine secrets for the contract and Kubernetes release with the talos plugin's options, the
// patches applied one at a time in order with Talos' patcher, and the result judged by Talos'
// validator as talosvalidate judges it. A config with problems is an error (RenderError) naming
// the stack keys; otherwise the config as YAML without comments (the plugin's docs and examples
// off) and Talos' warnings, each led by its key. Secrets never appear in messages.
func Render(in RenderInput) (config string, warnings []string, err error) {
	contract, err := parseContract(in.Contract)
	if err != nil {
		return "", nil, fmt.Errorf("talosVersion %q is not a Talos release like v1.11.5", in.Contract)
	}
	if !kubernetesVersion.MatchString(in.KubernetesVersion) {
		return "", nil, fmt.Errorf("kubernetesVersion %q is not a Kubernetes release like 1.34.1", in.KubernetesVersion)
	}
	t, err := machine.ParseType(in.Role)
	if err != nil || (in.Role != "controlplane" && in.Role != "worker") {
		return "", nil, fmt.Errorf("machineType %q is not one of %s", in.Role, strings.Join(Roles, ", "))
	}
	for i, p := range in.Patches {
		if p.Key == "" {
			return "", nil, fmt.Errorf("configPatches[%d].key is empty: name the stack key the patch comes from", i)
		}
	}
	bundle, err := in.Secrets.bundle()
	if err != nil {
		return "", nil, err
	}
	input, err := generateInput(in.ClusterName, in.Endpoint, in.KubernetesVersion, contract, bundle)
	if err != nil {
		return "", nil, err
	}
	generated, err := input.Config(t)
	if err != nil {
		return "", nil, fmt.Errorf("generating the %s config: %w", in.Role, err)
	}
	all, opaque := secretStrings(bundle)
	scrub := &generator{secrets: all, opaque: opaque}
	line := func(f finding) string {
		return fmt.Sprintf("%s: %s", f.Key, scrub.redact(f.Message))
	}

	cfg, problems, found := judgeNode(&roleBase{
		cfg: generated, verdict: judgeConfig(generated, in.KubernetesVersion), kubernetes: in.KubernetesVersion,
	}, in.Patches)
	for _, w := range found {
		warnings = append(warnings, line(w))
	}
	if len(problems) > 0 {
		e := &RenderError{Node: in.Node}
		for _, p := range problems {
			e.Problems = append(e.Problems, line(p))
		}
		return "", warnings, e
	}
	out, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return "", warnings, fmt.Errorf("encoding the machine config of %s: %w", in.Node, err)
	}
	return string(out), warnings, nil
}
