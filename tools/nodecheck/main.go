package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// Usage: nodecheck -talosconfig FILE -expect FILE [-timeout 30s]
// The talosconfig is read from a file, never from the command line, since it holds the admin key.
// Exit status: 0 no drift, 1 drift, 2 a node could not be read or the input is bad.
func main() {
	talosconfig := flag.String("talosconfig", "", "talosconfig file (admin credentials)")
	expect := flag.String("expect", "", "JSON file: {talosVersion, schematicId, kubernetesVersion, vip, nodes: [{name, address, installImage, role}]}")
	timeout := flag.Duration("timeout", 30*time.Second, "time allowed for all nodes")
	flag.Parse()
	os.Exit(run(*talosconfig, *expect, *timeout))
}

func run(talosconfigPath, expectPath string, timeout time.Duration) int {
	if talosconfigPath == "" || expectPath == "" {
		fmt.Fprintln(os.Stderr, "nodecheck: -talosconfig and -expect are required")
		return 2
	}
	tc, err := clientconfig.Open(talosconfigPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodecheck: talosconfig: %v\n", err)
		return 2
	}
	raw, err := os.ReadFile(expectPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodecheck: %v\n", err)
		return 2
	}
	var want Expected
	if err := json.Unmarshal(raw, &want); err != nil {
		fmt.Fprintf(os.Stderr, "nodecheck: %s: %v\n", expectPath, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code := 0
	results := Check(ctx, tc, want)
	for _, r := range results {
		fmt.Println(r.Line())
		switch {
		case r.Err != nil:
			code = 2
		case len(r.Drift) > 0 && code == 0:
			code = 1
		}
	}
	if line, down := VIPVerdict(want, results); line != "" {
		fmt.Println(line)
		if down && code == 0 {
			code = 1
		}
	}
	return code
}
