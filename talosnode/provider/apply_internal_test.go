package provider

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
)

func applyArgs(l *simtest.Cluster, address string, config []byte, timeout string) ConfigurationApplyArgs {
	return ConfigurationApplyArgs{
		Node: address,
		ClientConfiguration: ClientConfiguration{
			CACertificate:     l.Credentials.CACertificate,
			ClientCertificate: l.Credentials.ClientCertificate,
			ClientKey:         l.Credentials.ClientKey,
		},
		MachineConfiguration: string(config),
		ApplyMode:            "auto",
		Timeout:              timeout,
	}
}

// A machine still booting shows, while the first apply waits for it, the node and what each way
// of asking saw; once it answers in maintenance mode it gets its config.
func TestTheFirstApplyWaitsForABootingNodeShowingWhereItStands(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	n, err := simnode.New("127.0.10.99", simnode.APIPort, simtest.TalosVersion, simtest.Schematic, l.Trust)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	var shown []string
	// The machine finishes booting once the first wait line is shown.
	sink := progress.Sink{Status: func(s string) {
		shown = append(shown, s)
		if len(shown) == 1 {
			if err := n.Start(); err != nil {
				t.Error(err)
			}
		}
	}}
	target := node.Target{Name: "lab-cp-1", Address: "127.0.10.99"}
	got, err := install(context.Background(), target, applyArgs(l, "127.0.10.99", config, "1m"), sink)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if got.adopted || n.State().Applies != 1 {
		t.Errorf("adopted %t, %d applies: want the config installed once", got.adopted, n.State().Applies)
	}
	if len(shown) == 0 {
		t.Fatal("nothing was shown while the node did not answer")
	}
	want := "waiting for lab-cp-1 at 127.0.10.99:50000 to answer, in maintenance mode or over mutual TLS: mutual TLS: Unavailable: "
	if !strings.HasPrefix(shown[0], want) || !strings.Contains(shown[0], "; maintenance mode: Unavailable: ") ||
		!strings.Contains(shown[0], "connection refused") || !strings.HasSuffix(shown[0], "left of 1m0s") {
		t.Errorf("first line %q, want %q ... maintenance mode: Unavailable ... connection refused ... left of 1m0s", shown[0], want)
	}
}

// A machine that never answers fails at the timeout, naming it, both ways of asking and the hint.
func TestTheFirstApplyToADeadMachineFailsNamingIt(t *testing.T) {
	l := simtest.New(t)
	host, port := freePort(t)
	address := net.JoinHostPort(host, strconv.Itoa(port))
	_, err := install(context.Background(), node.Target{Name: "lab-wk-1", Address: address}, applyArgs(l, address, nil, "2s"), progress.Sink{})
	if err == nil {
		t.Fatal("an apply to a port where nothing listens succeeded")
	}
	for _, want := range []string{"lab-wk-1 (" + address + ")", "answered neither in maintenance mode nor over mutual TLS within 2s",
		"mutual TLS: Unavailable", "maintenance mode: Unavailable", "connection refused", "is " + address + " its address?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
