package node

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// through is a context for a call sent to an endpoint with talosctl's -n: the `nodes` metadata.
func through(t *testing.T, nodes ...*Node) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.address.String())
	}
	return client.WithNodes(c, addrs...)
}

// TestAnEndpointForwardsToTheNodesNamedAndMergesOneMessageEach: as apid does
// (internal/app/apid/pkg/director/director.go, backend/apid.go), the endpoint proxies a call
// whose `nodes` metadata names several machines to each of them and answers one message per
// node, its address in metadata.hostname; a node that is down gets a message of its own with
// metadata.error, and the others still answer.
func TestAnEndpointForwardsToTheNodesNamedAndMergesOneMessageEach(t *testing.T) {
	s := newSim(t, 24, 2, 1)
	cp, other, w := s.nodes[0], s.nodes[1], s.nodes[2]
	c := s.client(t, cp)
	hostnames := func(resp *machine.VersionResponse) map[string]string {
		got := map[string]string{}
		for _, m := range resp.GetMessages() {
			got[m.GetMetadata().GetHostname()] = m.GetMetadata().GetError()
			if m.GetMetadata().GetError() == "" && m.GetVersion().GetTag() != "v1.11.5" {
				t.Errorf("%s: version %q", m.GetMetadata().GetHostname(), m.GetVersion().GetTag())
			}
		}
		return got
	}
	resp, err := c.MachineClient.Version(through(t, cp, other, w), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	got := hostnames(resp)
	if len(resp.GetMessages()) != 3 || len(got) != 3 {
		t.Fatalf("want one message for each of 3 nodes, got %d: %v", len(resp.GetMessages()), got)
	}
	for _, n := range s.nodes {
		if e, ok := got[n.address.String()]; !ok || e != "" {
			t.Errorf("%s: answered %v, error %q", n.address, ok, e)
		}
	}

	w.Stop()
	resp, err = c.MachineClient.Version(through(t, cp, other, w), &emptypb.Empty{})
	if err != nil {
		t.Fatalf("one node down failed the whole call: %v", err)
	}
	got = hostnames(resp)
	if len(got) != 3 || got[cp.address.String()] != "" || got[other.address.String()] != "" {
		t.Fatalf("the nodes that are up must answer: %v", got)
	}
	if e := got[w.address.String()]; !strings.Contains(e, "connection refused") {
		t.Fatalf("%s is down: its message's error is %q, want the connection refused", w.address, e)
	}
}

// TestForwardedCallsKeepTheCallersRoles: apid passes the caller's roles on (talos-role
// metadata, trusted from its os:impersonator certificate), so the target's own role check
// refuses what the caller may not do, in the target's message.
func TestForwardedCallsKeepTheCallersRoles(t *testing.T) {
	s := newSim(t, 24, 2, 1)
	cp, w := s.nodes[0], s.nodes[2]
	reader := withRoles(t, cp, s.cl, "os:reader")
	resp, err := reader.MachineClient.Reboot(through(t, w), &machine.RebootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetMessages()) != 1 || resp.GetMessages()[0].GetMetadata().GetError() != "rpc error: code = PermissionDenied desc = not authorized" {
		t.Fatalf("a reader's reboot of %s through %s: %v", w.address, cp.address, resp)
	}
	// The single-node form (`node` metadata) is proxied one to one: the target's error as is.
	_, err = reader.MachineClient.Reboot(ctx(t, w), &machine.RebootRequest{})
	if !refusal(err) {
		t.Fatalf("reader reboot with node metadata: got %v, want not authorized", err)
	}
	// A stream (Read, admin only) through the endpoint comes from the target.
	r, err := s.client(t, cp).Read(ctx(t, w), bootIDPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), w.State().BootID; got != want {
		t.Fatalf("boot id through %s: %q, %s's is %q", cp.address, got, w.address, want)
	}
}

// TestCOSIIsForwardedToOneNodeOnly: COSI calls take the `node` metadata (talosctl get -n);
// with `nodes` apid refuses them (director.go).
func TestCOSIIsForwardedToOneNodeOnly(t *testing.T) {
	s := newSim(t, 24, 1, 1)
	cp, w := s.nodes[0], s.nodes[1]
	c := s.client(t, cp)
	mc, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, w), c.COSI, configres.ActiveID)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Config().Machine().Type().IsControlPlane() {
		t.Fatalf("asked %s for its config through %s, got a %s's", w.address, cp.address, mc.Config().Machine().Type())
	}
	_, err = safe.StateGetByID[*configres.MachineConfig](through(t, w), c.COSI, configres.ActiveID)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "one-2-many proxying is not supported for COSI methods") {
		t.Fatalf("COSI with nodes metadata: got %v", err)
	}
}
