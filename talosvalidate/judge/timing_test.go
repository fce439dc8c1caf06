package judge

import (
	"fmt"
	"testing"
	"time"
)

// cluster is a stack of n nodes (three control planes, the rest workers) with the program's
// built-ins and a few patches of the stack's own at each level.
func cluster(n int) Input {
	var nodes []Node
	for i := range n {
		role, name := "worker", fmt.Sprintf("w-%d", i-2)
		if i < 3 {
			role, name = "controlplane", fmt.Sprintf("cp-%d", i+1)
		}
		c := chain{
			all: []Patch{{Key: "talos-cluster:patches.all[0]", Patch: timeServers}},
			own: []Patch{{Key: fmt.Sprintf("talos-cluster:nodes[%d].patches[0]", i), Patch: `{"machine":{"sysctls":{"vm.max_map_count":"262144"}}}`}},
		}
		if role == "worker" {
			c.role = []Patch{{Key: "talos-cluster:patches.worker[0]", Patch: `{"machine":{"kubelet":{"extraArgs":{"max-pods":"250"}}}}`}}
		}
		nodes = append(nodes, node(name, role, c))
	}
	return input(nodes...)
}

// TestTiming logs what a preview pays, secrets and generation included (not asserted: machines
// differ; `go test -run Timing -v` shows it).
func TestTiming(t *testing.T) {
	for _, n := range []int{3, 25, 100} {
		in := cluster(n)
		start := time.Now()
		r := mustJudge(t, in)
		took := time.Since(start)
		if len(r.Problems)+len(r.Warnings) != 0 {
			t.Fatalf("%d nodes: want a clean cluster, got %q %q", n, r.Problems, r.Warnings)
		}
		t.Logf("%3d nodes: %v (%v per node)", n, took.Round(time.Microsecond), (took / time.Duration(n)).Round(time.Microsecond))
	}
}

func BenchmarkJudge(b *testing.B) {
	for _, n := range []int{3, 25, 100} {
		in := cluster(n)
		b.Run(fmt.Sprintf("%d nodes", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Judge(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
