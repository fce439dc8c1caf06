package provider

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"talos-cluster/talosnode/node"
)

// ReadTalosconfigEnv names the environment variable of the provider process that gives refreshes
// their own credential: the path of a talosconfig whose current context (or only one) holds
// ca, crt and key. It is used for the reads of a refresh (NodeState's and the Rollout's Read) and
// of a preview's pre-flight, never for a create, an update, an apply or an upgrade. Meant for an
// os:reader certificate (`talosctl config new reader.talosconfig --roles os:reader`), so that a
// pull request's preview never holds os:admin towards the nodes; Talos refuses a reader the
// MachineConfig (a Sensitive resource), so the config is then not compared.
const ReadTalosconfigEnv = "TALOSNODE_READ_TALOSCONFIG"

// ReadRolesEnv names the environment variable that makes refreshes read with a certificate the
// provider mints from the resource's machineSecrets with these roles (comma-separated, e.g.
// os:reader), instead of a talosconfig file: one that cannot expire on the drift job, as the
// stored reader talosconfig does a year after it was made. ReadTalosconfigEnv wins when both are set.
const ReadRolesEnv = "TALOSNODE_READ_ROLES"

// readCredentials is the refresh credential from ReadTalosconfigEnv, or minted from the machine
// secrets with ReadRolesEnv's roles; ok is false when neither is set (reads use the stack's own
// credential, os:admin).
func readCredentials(s *MachineSecrets) (creds node.Credentials, ok bool, err error) {
	path := os.Getenv(ReadTalosconfigEnv)
	if path == "" {
		return mintedReadCredentials(s)
	}
	fix := fmt.Sprintf("point %s at a talosconfig made by `talosctl config new <path> --roles os:reader`, or unset it to read with the stack's clientConfiguration",
		ReadTalosconfigEnv)
	cfg, err := clientconfig.Open(path)
	if err != nil {
		return node.Credentials{}, false, fmt.Errorf("%s=%s: %w; %s", ReadTalosconfigEnv, path, err, fix)
	}
	name := cfg.Context
	if name == "" && len(cfg.Contexts) == 1 {
		for only := range cfg.Contexts {
			name = only
		}
	}
	ctx := cfg.Contexts[name]
	if ctx == nil {
		names := make([]string, 0, len(cfg.Contexts))
		for n := range cfg.Contexts {
			names = append(names, n)
		}
		sort.Strings(names)
		return node.Credentials{}, false, fmt.Errorf("%s=%s: context %q is not in the file (contexts: %s); %s",
			ReadTalosconfigEnv, path, name, strings.Join(names, ", "), fix)
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"ca", ctx.CA}, {"crt", ctx.Crt}, {"key", ctx.Key}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return node.Credentials{}, false, fmt.Errorf("%s=%s: context %q has no %s; %s", ReadTalosconfigEnv, path, name, strings.Join(missing, ", "), fix)
	}
	return node.Credentials{CACertificate: ctx.CA, ClientCertificate: ctx.Crt, ClientKey: ctx.Key}, true, nil
}

// mintedReadCredentials is a certificate with ReadRolesEnv's roles from the machine secrets' Talos CA.
func mintedReadCredentials(s *MachineSecrets) (node.Credentials, bool, error) {
	value := strings.TrimSpace(os.Getenv(ReadRolesEnv))
	if value == "" {
		return node.Credentials{}, false, nil
	}
	var roles []string
	for r := range strings.SplitSeq(value, ",") {
		roles = append(roles, strings.TrimSpace(r))
	}
	set, unknown := role.Parse(roles)
	if len(unknown) > 0 {
		return node.Credentials{}, false, fmt.Errorf("%s=%s: unknown roles %s; name Talos roles, e.g. os:reader", ReadRolesEnv, value, strings.Join(unknown, ", "))
	}
	if s == nil || s.Certs.Os.Cert == "" || s.Certs.Os.Key == "" {
		return node.Credentials{}, false, fmt.Errorf("%s=%s: the resource has no machineSecrets to mint the certificate from; pass them (TalosCluster does), or use %s", ReadRolesEnv, value, ReadTalosconfigEnv)
	}
	issuer, err := node.NewIssuer(s.Certs.Os.Cert, s.Certs.Os.Key, set)
	if err != nil {
		return node.Credentials{}, false, fmt.Errorf("%s: machineSecrets.certs.os (the Talos CA): %w", ReadRolesEnv, err)
	}
	return issuer.Credentials(node.ClockSkew), true, nil
}

// configNotCompared is what the log and the refresh say when the credential may not read the
// MachineConfig.
const configNotCompared = "config not compared (os:reader may not read the MachineConfig)"

// warnedNodes holds the nodes whose "config not compared" warning this provider process has
// logged: NodeState and Rollout read the same node in one refresh, and it is said once.
var warnedNodes sync.Map

// warnConfigNotCompared logs, once per node and process, that its config was not compared.
func warnConfigNotCompared(t node.Target, warn func(string)) {
	if _, seen := warnedNodes.LoadOrStore(t.Address, true); seen {
		return
	}
	warn(fmt.Sprintf("refresh %s: %s: the recorded config, configHash, installerImage and vip are kept as they were; "+
		"release, schematic, links, stage and the Kubernetes version (KubeletConfig) were read. The read credential (%s or %s) holds no os:admin certificate; "+
		"the full comparison runs with the stack's credentials (unset both)", t, configNotCompared, ReadTalosconfigEnv, ReadRolesEnv))
}
