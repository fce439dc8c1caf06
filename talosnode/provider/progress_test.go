package provider

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
)

// A node where nothing listens shows, while NodeState waits for it, which node, at which address
// and port, what the last attempt saw and how long is left: not only `creating (Ns)` until the
// timeout runs out.
func TestAWaitForANodeThatDoesNotAnswerShowsWhereItStands(t *testing.T) {
	l := simtest.New(t)
	host, port := freePort(t)
	address := net.JoinHostPort(host, strconv.Itoa(port))

	// The clock moves 10 s at each look, so every attempt is past the 5 s throttle and the third
	// is past the 30 s after which a line is kept; the wait itself is cut after 3 s of real time.
	fake := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var shown, kept []string
	sink := progress.Sink{
		Status: func(s string) { shown = append(shown, s) },
		Log:    func(s string) { kept = append(kept, s) },
		Now: func() time.Time {
			now := fake
			fake = fake.Add(10 * time.Second)
			return now
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	declared := NodeStateArgs{
		Node: address,
		ClientConfiguration: ClientConfiguration{
			CACertificate:     l.Credentials.CACertificate,
			ClientCertificate: l.Credentials.ClientCertificate,
			ClientKey:         l.Credentials.ClientKey,
		},
		Timeout: "10m",
	}
	_, err := observe(ctx, "create", node.Target{Name: "cp-1", Address: address}, declared, nil, sink)
	if err == nil {
		t.Fatal("a wait on a port where nothing listens succeeded")
	}

	// Attempts at 0, 0.5 s and 1.5 s before the cut at 3 s.
	if len(shown) < 3 {
		t.Fatalf("shown %d lines, want at least 3: %q", len(shown), shown)
	}
	prefix := "create: waiting for cp-1 at " + address + " to answer over mutual TLS: last attempt: version: Unavailable: "
	for i, left := range []string{"9m50s", "9m40s", "9m30s"} {
		line := shown[i]
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, "connection refused") || !strings.HasSuffix(line, "; "+left+" left of 10m0s") {
			t.Errorf("line %d:\n%s\nwant %q ... connection refused ... %q", i, line, prefix, "; "+left+" left of 10m0s")
		}
	}
	if len(kept) != 1 || kept[0] != shown[2] {
		t.Errorf("kept %q, want the line 30 s in: %q", kept, shown[2])
	}
}
