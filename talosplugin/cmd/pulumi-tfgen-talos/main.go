// Command pulumi-tfgen-talos writes the Pulumi schema of the bridged Talos provider.
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"talos-cluster/talosplugin/info"
)

func main() {
	tfgen.Main("talos", info.Provider(nil))
}
