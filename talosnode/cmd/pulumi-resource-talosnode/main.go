// pulumi-resource-talosnode is the talosnode Pulumi resource provider plugin.
package main

import (
	"context"
	"fmt"
	"os"

	"talos-cluster/talosnode/provider"
)

// Version is set at link time: -ldflags "-X main.Version=0.1.0".
var Version = "0.1.0"

func main() {
	prov, err := provider.New()
	if err != nil {
		fmt.Fprintf(os.Stderr, "talosnode: %v\n", err)
		os.Exit(1)
	}
	if err := provider.Serve(context.Background(), prov, Version); err != nil {
		fmt.Fprintf(os.Stderr, "talosnode: %v\n", err)
		os.Exit(1)
	}
}
