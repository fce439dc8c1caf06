package judge

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/siderolabs/crypto/x509"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/gendata"
)

// generator makes each role's config once: generation is deterministic given the secrets, so
// every node of a role starts from the same config (as the program's machine.getConfiguration
// per role does), and the secrets are made once per run.
type generator struct {
	input *generate.Input
	roles map[string]*roleBase
	// secrets are the throwaway secrets in every form a message could carry them; opaque the
	// random ones among them (tokens, base64), whose fragments give a secret away too, unlike
	// the PEM text's "BEGIN PRIVATE KEY".
	secrets, opaque []string
	// kubernetes is the declared Kubernetes release.
	kubernetes string
}

// roleBase is a role's generated config before any patch, and Talos' verdict on it.
type roleBase struct {
	cfg     coreconfig.Provider
	verdict verdict
	// kubernetes is the declared Kubernetes release the extraArgs are judged for (removed.go).
	kubernetes string
}

func parseContract(version string) (*coreconfig.VersionContract, error) {
	return coreconfig.ParseContractFromVersion(version)
}

func newGenerator(in Input) (*generator, error) {
	contract, err := parseContract(cmp.Or(in.Contract, in.TalosVersion))
	if err != nil {
		return nil, err
	}
	// Throwaway secrets, in memory only: the real ones may not exist yet (a new stack), and the
	// checks never depend on their values. They are never written, printed or returned.
	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), secretsContract(contract))
	if err != nil {
		return nil, fmt.Errorf("generating throwaway secrets: %w", err)
	}
	input, err := generateInput(in.ClusterName, in.Endpoint, in.KubernetesVersion, contract, bundle)
	if err != nil {
		return nil, err
	}
	all, opaque := secretStrings(bundle)
	return &generator{
		input: input, roles: map[string]*roleBase{}, secrets: all, opaque: opaque, kubernetes: in.KubernetesVersion,
	}, nil
}

// generateInput prepares config generation with the options terraform-provider-talos v0.7.1
// passes (pkg/talos/util.go, generate()), so a generated config is the one its
// machine.getConfiguration returned before patches. Two differ in form, not in result: the plugin
// passes generate.WithPersist(true), which machinery 1.13 removed along with the option (init.go
// and worker.go now always set machine.persist: true, the same value); and the default install
// image names the plugin's library release (its gendata.VersionTag), not this library's, so a
// config rendered here for an existing cluster is byte for byte the one the plugin rendered. One is
// new: from the 1.14 contract an install disk makes machinery write an UnattendedInstallConfig
// document in place of machine.install (config/generate init.go, worker.go), which Talos refuses
// beside the machine.install the program patches in; skipping it changes nothing for older
// contracts, which never write that document.
// PluginLibraryVersion is the Talos config library inside the talos plugin (terraform-provider-talos
// v0.7.1 pins machinery v1.9.2), whose release the default install image of a generated config
// names: kept, so a config rendered for a cluster the plugin rendered before stays byte for byte
// the same (the program patches the real installer image in anyway).
const PluginLibraryVersion = "v1.9.2"

func generateInput(clusterName, endpoint, kubernetesVersion string, contract *coreconfig.VersionContract, bundle *secrets.Bundle) (*generate.Input, error) {
	input, err := generate.NewInput(clusterName, endpoint, strings.TrimPrefix(kubernetesVersion, "v"),
		generate.WithClusterDiscovery(true),
		generate.WithDNSDomain(constants.DefaultDNSDomain),
		generate.WithInstallDisk("/dev/sda"),
		generate.WithInstallImage(fmt.Sprintf("%s/%s/installer:%s", gendata.ImagesRegistry, gendata.ImagesUsername, PluginLibraryVersion)),
		generate.WithSecretsBundle(bundle),
		generate.WithVersionContract(contract),
		generate.WithSkipUnattendedInstallConfig(true),
	)
	if err != nil {
		return nil, fmt.Errorf("preparing config generation: %w", err)
	}
	return input, nil
}

// secretsContract is the contract the throwaway secrets are made for. From 1.7 on the contract
// only changes the service-account key from ECDSA to RSA-4096 (secrets.Bundle.populate), whose
// generation takes 0.5 to 1.5 s; Talos' validator never looks at the key, so the secrets are made
// as for 1.6 and the config is still generated for the real contract.
func secretsContract(contract *coreconfig.VersionContract) *coreconfig.VersionContract {
	if contract.Greater(coreconfig.TalosVersion1_6) {
		return coreconfig.TalosVersion1_6
	}
	return contract
}

func (g *generator) base(role string) (*roleBase, error) {
	if b, ok := g.roles[role]; ok {
		return b, nil
	}
	t, err := machine.ParseType(role)
	if err != nil {
		return nil, err
	}
	cfg, err := g.input.Config(t)
	if err != nil {
		return nil, err
	}
	b := &roleBase{cfg: cfg, verdict: judgeConfig(cfg, g.kubernetes), kubernetes: g.kubernetes}
	g.roles[role] = b
	return b, nil
}

// secretStrings lists every secret of the bundle in the forms a message could carry them, and
// apart the random ones (all but PEM text).
func secretStrings(b *secrets.Bundle) (all, opaque []string) {
	add := func(s string) {
		if len(s) >= 6 {
			all = append(all, s)
			opaque = append(opaque, s)
		}
	}
	if b.Cluster != nil {
		add(b.Cluster.ID)
		add(b.Cluster.Secret)
	}
	if b.Secrets != nil {
		add(b.Secrets.BootstrapToken)
		add(b.Secrets.AESCBCEncryptionSecret)
		add(b.Secrets.SecretboxEncryptionSecret)
	}
	if b.TrustdInfo != nil {
		add(b.TrustdInfo.Token)
	}
	if c := b.Certs; c != nil {
		// As the config carries them (base64) and as text.
		addPEM := func(pem []byte) {
			if len(pem) > 0 {
				add(base64.StdEncoding.EncodeToString(pem))
				all = append(all, string(pem))
			}
		}
		for _, pair := range []*x509.PEMEncodedCertificateAndKey{c.Etcd, c.K8s, c.K8sAggregator, c.OS} {
			if pair != nil {
				addPEM(pair.Key)
				addPEM(pair.Crt)
			}
		}
		if c.K8sServiceAccount != nil {
			addPEM(c.K8sServiceAccount.Key)
		}
	}
	return all, opaque
}

// pemBlock matches any PEM block, in case Talos quotes one only in part of a message.
var pemBlock = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)`)

// quoted matches what Talos quotes of a value: "value", or `value` and `shortened...`.
var quoted = regexp.MustCompile("\"([^\"]{6,})\"|`([^`]{6,}?)(?:\\.\\.\\.)?`")

// redact removes the throwaway secrets from a message. Talos' messages quote keys and values of
// the patch, not of the generated PKI, unless a JSON patch copies a secret into a checked field
// ("label value \"...\" is invalid"); this keeps even that, or a shortened quote of it, out.
func (g *generator) redact(message string) string {
	for _, s := range g.secrets {
		message = strings.ReplaceAll(message, s, "<redacted>")
	}
	message = quoted.ReplaceAllStringFunc(message, func(q string) string {
		m := quoted.FindStringSubmatch(q)
		part := m[1] + m[2]
		for _, s := range g.opaque {
			if strings.Contains(s, part) {
				return `"<redacted>"`
			}
		}
		return q
	})
	return pemBlock.ReplaceAllString(message, "<redacted PEM>")
}
