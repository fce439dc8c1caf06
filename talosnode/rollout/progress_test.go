package rollout_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
	"talos-cluster/talosnode/rollout"
)

// The rollout's waits show where they stand while they last: a new control plane that does not
// answer is named with its address and port, what the last attempt saw and the time left.
func TestAWaitOnANodeThatDoesNotAnswerShowsWhereItStands(t *testing.T) {
	l := simtest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	// The clock moves 10 s at each look: every attempt is past the 5 s throttle. The wait itself
	// is cut after 2 s of real time.
	fake := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var shown []string
	opts := rollout.Options{
		Credentials:   node.Credentials(l.Credentials),
		ApplyMode:     machine.ApplyConfigurationRequest_AUTO,
		HealthTimeout: 10 * time.Minute,
		Poll:          200 * time.Millisecond,
		Progress: progress.Sink{
			Status: func(s string) { shown = append(shown, s) },
			Now: func() time.Time {
				now := fake
				fake = fake.Add(10 * time.Second)
				return now
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cp := rollout.Node{Target: node.Target{Name: "cp-4", Address: address}, ControlPlane: true, New: true,
		TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer}
	if _, err := rollout.Run(ctx, []rollout.Node{cp}, opts); err == nil {
		t.Fatal("a rollout awaiting a node where nothing listens succeeded")
	}
	if len(shown) < 2 {
		t.Fatalf("shown %d lines, want at least 2: %q", len(shown), shown)
	}
	prefix := "cp-4 at " + address + ": join: waiting for it to answer over mutual TLS, running and ready: not answering (version: Unavailable: "
	for i, left := range []string{"9m50s", "9m40s"} {
		if line := shown[i]; !strings.HasPrefix(line, prefix) || !strings.Contains(line, "connection refused") || !strings.HasSuffix(line, "; "+left+" left of 10m0s") {
			t.Errorf("line %d:\n%s\nwant %q ... connection refused ... %q", i, line, prefix, "; "+left+" left of 10m0s")
		}
	}
}
