package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

func TestMaintenanceModeServesNonSensitiveResourcesOnly(t *testing.T) {
	n := startNode(t)
	c := insecure(t, n)
	for _, tc := range []struct {
		name string
		read func() error
		// refused is part of the refusal's message, "" when the read must succeed.
		refused string
	}{
		{"links", func() error {
			links, err := safe.StateListAll[*network.LinkStatus](ctx(t, n), c.COSI)
			if err != nil {
				return err
			}
			if links.Len() != 1 {
				return fmt.Errorf("%d links", links.Len())
			}
			link := links.Get(0)
			spec := link.TypedSpec()
			// 127.0.7.x, link 0: the MAC is the address behind a locally administered 02.
			wantMAC := fmt.Sprintf("02:7f:00:07:%02x:00", n.address.To4()[3])
			if link.Metadata().ID() != "enp1s0" || spec.HardwareAddr.String() != wantMAC || spec.BusPath != "0000:01:00.0" ||
				spec.Driver != "virtio_net" || !spec.Physical() {
				return fmt.Errorf("link %s: %+v", link.Metadata().ID(), spec)
			}
			return nil
		}, ""},
		{"the schematic extension", func() error {
			_, err := safe.StateListAll[*runtime.ExtensionStatus](ctx(t, n), c.COSI)
			return err
		}, ""},
		{"the resource definitions talosctl resolves a type with", func() error {
			var ns resource.Namespace
			rd, err := c.ResolveResourceKind(ctx(t, n), &ns, "links")
			if err == nil && (rd.Metadata().ID() != strings.ToLower(network.LinkStatusType) || ns != network.NamespaceName) {
				return fmt.Errorf("resolved %s in %q", rd.Metadata().ID(), ns)
			}
			return err
		}, ""},
		{"the machine config, which is Sensitive", func() error {
			_, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), c.COSI, configres.ActiveID)
			return err
		}, "code = PermissionDenied desc = not authorized"},
		{"a write", func() error {
			return c.COSI.Create(ctx(t, n), network.NewLinkStatus(network.NamespaceName, "eth0"))
		}, "write access is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.read()
			if (tc.refused == "" && err != nil) || (tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused))) {
				t.Fatalf("got %v, want refused %q", err, tc.refused)
			}
		})
	}
}

func TestLinksAreServedOnceConfiguredToo(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.worker); err != nil {
		t.Fatal(err)
	}
	cp := startNode(t) // signs the worker's API certificate, as trustd would
	if err := apply(t, insecure(t, cp), cp, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	links, err := safe.StateListAll[*network.LinkStatus](ctx(t, n), mutual(t, n, cl.talosconfig).COSI)
	if err != nil || links.Len() != 1 {
		t.Fatalf("links: %v (%d)", err, links.Len())
	}
	if got := n.State().Links; !slices.Equal(got, []string{"enp1s0"}) {
		t.Fatalf("state links = %v", got)
	}
}

func TestWithLinksNamesTheLinksInBusOrder(t *testing.T) {
	addr := "127.0.7." + fmt.Sprint(int(nextHost.Add(1))+10)
	n, err := New(addr, APIPort, "v1.11.5", bootedSchematic, NewTrust(), WithLinks("enp1s0", "enp2s0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	links, err := safe.StateListAll[*network.LinkStatus](ctx(t, n), insecure(t, n).COSI)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for link := range links.All() {
		got = append(got, link.Metadata().ID()+" "+link.TypedSpec().BusPath+" "+link.TypedSpec().HardwareAddr.String()[15:])
	}
	if want := []string{"enp1s0 0000:01:00.0 00", "enp2s0 0000:02:00.0 01"}; !slices.Equal(got, want) {
		t.Fatalf("links = %v, want %v", got, want)
	}
}

func TestAVIPComesUpOnOneControlPlaneOfABootstrappedClusterWhenItsLinkExists(t *testing.T) {
	const vip = "10.5.0.100"
	for _, tc := range []struct {
		name   string
		device string
		link   string // "" when no link matches
		reason string // of the first control plane after bootstrap
	}{
		{"by interface name", "interface: enp1s0", "enp1s0", ""},
		{"by a name the machine does not have", "interface: eth0", "", `no link matches interface "eth0" (links: enp1s0)`},
		{"by bus path", `deviceSelector: {busPath: "0000:01:*"}`, "enp1s0", ""},
		{"by hardware address, driver and physical", `deviceSelector: {hardwareAddr: "02:7f:*", driver: virtio_net, physical: true}`, "enp1s0", ""},
		{"by a driver the machine does not have", `deviceSelector: {driver: e1000, physical: true}`, "",
			`no link matches deviceSelector {driver: "e1000", physical: true} (links: enp1s0)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second, worker, cl := startNode(t), startNode(t), startNode(t), newCluster(t, "lab")
			// dhcp: true keeps the machines' own addresses on the link the entry names.
			patch := fmt.Sprintf("machine:\n  network:\n    interfaces:\n      - %s\n        dhcp: true\n        vip:\n          ip: %s\n", tc.device, vip)
			for _, n := range []*Node{first, second} {
				if err := apply(t, insecure(t, n), n, patched(t, cl.controlPlane, patch)); err != nil {
					t.Fatal(err)
				}
			}
			if err := apply(t, insecure(t, worker), worker, patched(t, cl.worker, patch)); err != nil {
				t.Fatal(err)
			}
			before := first.State().VIP
			if before == nil || before.Address != vip || before.Link != tc.link || before.Up {
				t.Fatalf("before bootstrap: %+v", before)
			}
			if tc.link != "" && !strings.HasPrefix(before.Reason, "cluster not bootstrapped") {
				t.Fatalf("before bootstrap: reason %q", before.Reason)
			}

			// etcd is bootstrapped on the second; the election still picks the first in node order.
			bootstrap(t, second, cl)
			got := []*VIPStatus{first.State().VIP, second.State().VIP, worker.State().VIP}
			if tc.link == "" {
				for i, v := range got {
					if v.Up || v.Link != "" || v.Reason != tc.reason {
						t.Fatalf("node %d: %+v, want down with reason %q", i, v, tc.reason)
					}
				}
				assertAddresses(t, first, cl, nil)
				return
			}
			if !got[0].Up || got[0].Reason != "" {
				t.Fatalf("first control plane: %+v", got[0])
			}
			if got[1].Up || !strings.HasPrefix(got[1].Reason, "not the VIP holder") {
				t.Fatalf("second control plane: %+v", got[1])
			}
			if got[2].Up || !strings.HasPrefix(got[2].Reason, "not a control plane") {
				t.Fatalf("worker: %+v", got[2])
			}
			assertAddresses(t, first, cl, []string{"enp1s0/" + vip + "/32"})
			assertAddresses(t, second, cl, nil)

			// A dead holder loses the VIP to the next control plane.
			first.Stop()
			if v := second.State().VIP; !v.Up {
				t.Fatalf("after the holder stopped: %+v", v)
			}
			assertAddresses(t, second, cl, []string{"enp1s0/" + vip + "/32"})
		})
	}
}

func assertAddresses(t *testing.T, n *Node, cl cluster, want []string) {
	t.Helper()
	list, err := safe.StateListAll[*network.AddressStatus](ctx(t, n), mutual(t, n, cl.talosconfig).COSI)
	if err != nil {
		t.Fatalf("addresses of %s: %v", n.address, err)
	}
	var got []string
	for addr := range list.All() {
		got = append(got, addr.Metadata().ID())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("addresses of %s = %v, want %v", n.address, got, want)
	}
}

func TestAnInterfacesEntryWithoutDHCPOrTheAddressTakesTheMachineOffTheNetwork(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry string // a machine.network.interfaces entry; %s is the node's address
		// source is how the address reaches the first link, "" when it is lost.
		source string
	}{
		{"no entry: the default DHCP", "", "dhcp"},
		{"a VIP only, by name", "interface: enp1s0\n        vip: {ip: 10.5.0.100}", ""},
		{"a VIP only, by bus path", "deviceSelector: {busPath: \"0000:01:*\"}\n        vip: {ip: 10.5.0.100}", ""},
		{"a VIP and dhcp", "interface: enp1s0\n        dhcp: true\n        vip: {ip: 10.5.0.100}", "dhcp"},
		{"a VIP and the machine's static address", "interface: enp1s0\n        addresses: [%s/8]\n        vip: {ip: 10.5.0.100}", "static"},
		{"a VIP and another static address", "interface: enp1s0\n        addresses: [127.0.99.1/8]\n        vip: {ip: 10.5.0.100}", ""},
		{"the link ignored", "interface: enp1s0\n        ignore: true", ""},
		{"a link the machine lacks", "interface: eth0\n        vip: {ip: 10.5.0.100}", "dhcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, cl := startNode(t), newCluster(t, "lab")
			config := cl.controlPlane
			if tc.entry != "" {
				entry := tc.entry
				if strings.Contains(entry, "%s") {
					entry = fmt.Sprintf(entry, n.address)
				}
				config = patched(t, config, "machine:\n  network:\n    interfaces:\n      - "+entry+"\n")
			}
			// The apply itself is answered: Talos drops the address after SetConfig returns.
			if err := apply(t, insecure(t, n), n, config); err != nil {
				t.Fatal(err)
			}
			got := n.State().NodeAddress
			if got.Source != tc.source || (tc.source == "") != (got.Lost != "") {
				t.Fatalf("node address = %+v, want source %q", got, tc.source)
			}
			short, cancel := context.WithTimeout(ctx(t, n), 3*time.Second)
			defer cancel()
			_, err := mutual(t, n, cl.talosconfig).Version(short)
			if tc.source != "" && err != nil {
				t.Fatalf("a machine with its address does not answer: %v", err)
			}
			if tc.source == "" && err == nil {
				t.Fatalf("a machine without an address answered (%s)", got.Lost)
			}
			// It boots the same way: a power cycle does not bring the address back.
			n.Stop()
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
			if s := n.State(); s.Up != (tc.source != "") {
				t.Fatalf("after a power cycle: up %t, address %+v", s.Up, s.NodeAddress)
			}
		})
	}
}
