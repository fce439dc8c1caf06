// Command pulumi-resource-talos is the Talos resource plugin. The setup script runs tfgen into this
// folder first, so the schema and bridge metadata embedded below are the ones generated from the
// same provider build.
package main

import (
	"context"
	_ "embed"

	pfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	"talos-cluster/talosplugin/info"
)

//go:embed schema.json
var schema []byte

//go:embed bridge-metadata.json
var metadata []byte

func main() {
	pfbridge.Main(context.Background(), "talos", info.Provider(metadata), pfbridge.ProviderMetadata{PackageSchema: schema})
}
