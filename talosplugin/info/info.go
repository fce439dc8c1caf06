// Package info describes the Talos provider to the Terraform bridge, so that the Pulumi schema's
// tokens (talos:machine/secrets:Secrets and so on) match those of the published @pulumiverse/talos.
package info

import (
	"os"
	"strings"

	pfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	talos "github.com/siderolabs/terraform-provider-talos/pkg/talos"

	"talos-cluster/talosplugin/installmode"
)

// Version is set at link time from scripts/toolchain.env.
var Version = "0.0.0-dev"

// Provider returns the bridge description; metadata is the bridge-metadata.json that tfgen wrote,
// or nil when tfgen itself is running.
func Provider(metadata []byte) tfbridge.ProviderInfo {
	if metadata == nil {
		metadata = []byte("{}")
	}
	prov := tfbridge.ProviderInfo{
		// Upstream's provider, except that a config apply installs a new node with apply mode auto
		// when no_reboot or staged is declared (see installmode).
		P:                 pfbridge.ShimProvider(installmode.Provider(talos.New())),
		Name:              "talos",
		DisplayName:       "Talos Linux",
		Publisher:         "pulumiverse",
		Version:           Version,
		GitHubOrg:         "siderolabs",
		Repository:        "https://github.com/siderolabs/terraform-provider-talos",
		License:           "MPL-2.0",
		MetadataInfo:      tfbridge.NewProviderMetadata(metadata),
		JavaScript:        &tfbridge.JavaScriptInfo{PackageName: "@pulumiverse/talos"},
		TFProviderVersion: "0.7.1",
		// Where tfgen reads the upstream docs for the SDK's doc comments (setup passes the module's
		// folder in the module cache).
		UpstreamRepoPath: os.Getenv("TALOS_UPSTREAM_DIR"),
	}
	// The published SDK spells the image factory module "imagefactory", not "imageFactory".
	lower := func(module, name string) (string, error) {
		return tokens.MakeStandard("talos")(strings.ToLower(module), name)
	}
	prov.MustComputeTokens(tokens.KnownModules("talos_", "index",
		[]string{"machine_", "cluster_", "client_", "image_factory_"}, lower))
	return prov
}
