// Command talosnode-snapshot takes a verified etcd snapshot of a cluster with a one-hour
// os:etcd:backup client certificate minted from the machine CA (scripts/snapshot.ts runs it:
// `npm run snapshot -- <stack>`).
//
//	talosnode-snapshot -dir <folder> -prefix <stack> < input.json
//
// The input (talosnode/backup.Input) comes on standard input only, never in arguments or the
// environment: {"machineSecrets": <the talos plugin's machineSecrets>, "controlPlanes":
// [{"name": "cp-1", "address": "10.0.0.11"}, ...]}. On success it prints one JSON line:
// {"node", "address", "path", "size", "revision"}; on failure the reason, naming each control
// plane it asked, and exits 1 (2 for bad arguments or input).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"talos-cluster/talosnode/backup"
	"talos-cluster/talosnode/rollout"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("talosnode-snapshot", flag.ContinueOnError)
	flags.SetOutput(stderr)
	dir := flags.String("dir", "", "the folder snapshots go to (created 0700 when missing)")
	prefix := flags.String("prefix", "", "what every file name starts with: the stack")
	keep := flags.Int("keep", 5, "snapshots kept per node, the newest")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *prefix == "" || flags.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: talosnode-snapshot -dir <folder> -prefix <stack> < {\"machineSecrets\": ..., \"controlPlanes\": [{\"name\", \"address\"}]}")
		return 2
	}
	var in backup.Input
	if err := json.NewDecoder(stdin).Decode(&in); err != nil {
		fmt.Fprintf(stderr, "standard input: expected JSON {\"machineSecrets\", \"controlPlanes\"}: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := backup.Take(ctx, in, backup.Options{Snapshots: rollout.Snapshots{Dir: *dir, Prefix: *prefix, Keep: *keep}}, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	out, _ := json.Marshal(map[string]any{"node": r.Node.Name, "address": r.Node.Address, "path": r.Path, "size": r.Size, "revision": r.Revision})
	fmt.Fprintln(stdout, string(out))
	return 0
}
