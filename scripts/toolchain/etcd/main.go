// etcd, built from the server module at the release pinned in go.mod, for the simulator's real
// control plane (test/sim: -etcd). The upstream binary's main is this one line.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
