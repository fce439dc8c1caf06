package provider

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"talos-cluster/talosnode/progress"
)

// freePort is a loopback address where nothing listens: taken, then freed.
func freePort(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// A new node that is still booting shows, while its first config apply waits for it, its name,
// address and port and what the last attempt saw; the wait ends once it accepts.
func TestAReachableWaitShowsTheNodeUntilItAccepts(t *testing.T) {
	host, port := freePort(t)
	a := ReachableArgs{Node: "wk-1", Address: host, Port: port, Timeout: "1m"}
	var shown []string
	sink := progress.Sink{Status: func(s string) { shown = append(shown, s) }}

	listening := make(chan net.Listener, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond) // the machine boots
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			t.Error(err)
		}
		listening <- ln
	}()
	if err := waitReachable(context.Background(), a, sink); err != nil {
		t.Fatalf("the wait failed once the node listened: %v", err)
	}
	if ln := <-listening; ln != nil {
		_ = ln.Close()
	}
	if len(shown) == 0 {
		t.Fatal("nothing was shown while the node did not answer")
	}
	want := "waiting for wk-1 at " + net.JoinHostPort(host, strconv.Itoa(port)) + " to accept a connection on the Talos API: last attempt: "
	if !strings.HasPrefix(shown[0], want) || !strings.Contains(shown[0], "connection refused") || !strings.Contains(shown[0], "left of 1m0s") {
		t.Errorf("first line %q, want %q... connection refused ...left of 1m0s", shown[0], want)
	}
}

// A machine that never answers fails its wait at the timeout, naming it and what was seen.
func TestAReachableWaitOnADeadMachineFailsNamingIt(t *testing.T) {
	host, port := freePort(t)
	a := ReachableArgs{Node: "cp-2", Address: host, Port: port, Timeout: "2s"}
	err := waitReachable(context.Background(), a, progress.Sink{})
	if err == nil {
		t.Fatal("a wait on a port where nothing listens succeeded")
	}
	for _, want := range []string{"cp-2 at " + net.JoinHostPort(host, strconv.Itoa(port)), "not ready within 2s", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Only a node that moved is waited for again: a later up with a node down must not stall on a
// changed timeout.
func TestOnlyANewAddressOrPortWaitsAgain(t *testing.T) {
	base := ReachableArgs{Node: "cp-1", Address: "10.0.0.11", Port: 50000, Timeout: "10m"}
	for _, c := range []struct {
		name string
		new  ReachableArgs
		want bool
	}{
		{"timeout", ReachableArgs{Node: "cp-1", Address: "10.0.0.11", Port: 50000, Timeout: "20m"}, false},
		{"name", ReachableArgs{Node: "cp-9", Address: "10.0.0.11", Port: 50000, Timeout: "10m"}, false},
		{"address", ReachableArgs{Node: "cp-1", Address: "10.0.0.21", Port: 50000, Timeout: "10m"}, true},
		{"port", ReachableArgs{Node: "cp-1", Address: "10.0.0.11", Port: 50001, Timeout: "10m"}, true},
	} {
		if got := movedTo(base, c.new); got != c.want {
			t.Errorf("%s changed: waits again = %v, want %v", c.name, got, c.want)
		}
	}
}
