package provider

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

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

// readCredentials is the refresh credential from ReadTalosconfigEnv; ok is false when the
// variable is unset or empty (reads use the stack's clientConfiguration, os:admin).
func readCredentials() (creds node.Credentials, ok bool, err error) {
	path := os.Getenv(ReadTalosconfigEnv)
	if path == "" {
		return node.Credentials{}, false, nil
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
		"release, schematic, links, stage and the Kubernetes version (KubeletConfig) were read. %s holds no os:admin certificate; "+
		"the full comparison runs with the stack's credentials (unset %s)", t, configNotCompared, ReadTalosconfigEnv, ReadTalosconfigEnv))
}
