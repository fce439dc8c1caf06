package node_test

import (
	"net"
	"slices"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"

	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
)

// link is a LinkStatus as Talos reports a virtio NIC, or a bond when kind is set.
func link(name, alias string, altNames []string, bus, mac, kind string) *network.LinkStatus {
	l := network.NewLinkStatus(network.NamespaceName, name)
	spec := l.TypedSpec()
	spec.Type = nethelpers.LinkEther
	spec.Kind = kind
	spec.Alias = alias
	spec.AltNames = altNames
	spec.BusPath = bus
	spec.Driver = "virtio_net"
	spec.PCIID = "1AF4:1041"
	addr, err := net.ParseMAC(mac)
	if err != nil {
		panic(err)
	}
	spec.HardwareAddr, spec.PermanentAddr = nethelpers.HardwareAddr(addr), nethelpers.HardwareAddr(addr)
	return l
}

// The simulator's links have no alias, altNames or kind, so those rules are tested on plain data.
func TestResolveVIPAsTalosDoes(t *testing.T) {
	l := simtest.New(t)
	links := []*network.LinkStatus{
		link("enp2s0", "", nil, "0000:02:00.0", "02:7f:00:00:01:01", ""),
		link("enp1s0", "lan", []string{"enxaabbccddeeff"}, "0000:01:00.0", "02:7f:00:00:01:00", ""),
		link("bond0", "", nil, "", "02:7f:00:00:01:00", "bond"),
	}
	entry := func(yaml string) string {
		return "machine:\n  network:\n    interfaces:\n" + yaml
	}
	vip := "        vip:\n          ip: 10.20.0.10\n"
	for _, tc := range []struct {
		name  string
		patch string
		links []*network.LinkStatus
		want  node.VIP
	}{
		{name: "no VIP", patch: entry("      - interface: enp1s0\n        dhcp: true\n"), want: node.VIP{}},
		{name: "by alias", patch: entry("      - interface: lan\n" + vip), want: node.VIP{Address: "10.20.0.10", Link: "enp1s0"}},
		{name: "by altName", patch: entry("      - interface: enxaabbccddeeff\n" + vip), want: node.VIP{Address: "10.20.0.10", Link: "enp1s0"}},
		{
			name: "the first entry with a VIP", patch: entry("      - interface: enp2s0\n        dhcp: true\n      - interface: eth0\n" + vip + "      - interface: enp1s0\n        vip:\n          ip: 10.20.0.11\n"),
			want: node.VIP{Address: "10.20.0.10", Problem: `no link matches interface "eth0"; links: bond0, enp1s0, enp2s0`},
		},
		{
			name: "a selector's first match by name", patch: entry("      - deviceSelector:\n          busPath: \"0000:0*\"\n" + vip),
			want: node.VIP{Address: "10.20.0.10", Link: "enp1s0"},
		},
		{
			name: "physical: false picks the bond sharing the NIC's address", patch: entry("      - deviceSelector:\n          hardwareAddr: \"02:7f:00:00:01:00\"\n          physical: false\n" + vip),
			want: node.VIP{Address: "10.20.0.10", Link: "bond0"},
		},
		{
			name: "globs are case-sensitive", patch: entry("      - deviceSelector:\n          permanentAddr: \"02:7F:*\"\n" + vip),
			want: node.VIP{Address: "10.20.0.10", Problem: `no link matches deviceSelector {permanentAddr: "02:7F:*"}; links: bond0, enp1s0, enp2s0`},
		},
		{
			name: "every field given must match", patch: entry("      - deviceSelector:\n          pciID: \"1AF4:*\"\n          driver: e1000\n" + vip),
			want: node.VIP{Address: "10.20.0.10", Problem: `no link matches deviceSelector {pciID: "1AF4:*", driver: "e1000"}; links: bond0, enp1s0, enp2s0`},
		},
		{
			name: "a node without links", patch: entry("      - interface: enp1s0\n" + vip), links: []*network.LinkStatus{},
			want: node.VIP{Address: "10.20.0.10", Problem: `no link matches interface "enp1s0"; links: none`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := configloader.NewFromBytes(l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, tc.patch))
			if err != nil {
				t.Fatal(err)
			}
			on := links
			if tc.links != nil {
				on = tc.links
			}
			if got := node.ResolveVIP(cfg, on); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The cases of Talos' own test of selectDevices (internal/app/machined/pkg/controllers/network/
// device_config_test.go TestSelectors): eth0 is a physical NIC with driver "thedriver" on bus
// 0000:01:00.0, eth1 a link of no type on bus 0000:01:01.0. The simulator ports the same function
// on its own (test/sim/node/links.go selectLinks) and checks the same cases: one bug must not pass
// both the checker and the oracle.
func TestSelectLinksOnTalosOwnCases(t *testing.T) {
	eth0 := network.NewLinkStatus(network.NamespaceName, "eth0")
	eth0.TypedSpec().Driver = "thedriver"
	eth0.TypedSpec().BusPath = "0000:01:00.0"
	eth0.TypedSpec().Type = nethelpers.LinkEther
	eth1 := network.NewLinkStatus(network.NamespaceName, "eth1")
	eth1.TypedSpec().BusPath = "0000:01:01.0"
	physical := true
	for _, tc := range []struct {
		name     string
		selector v1alpha1.NetworkDeviceSelector
		want     []string
	}{
		{"by kernel driver", v1alpha1.NetworkDeviceSelector{NetworkDeviceKernelDriver: "thedriver"}, []string{"eth0"}},
		{"a driver no link has", v1alpha1.NetworkDeviceSelector{NetworkDeviceKernelDriver: "no-match"}, nil},
		{"a bus path glob matching both", v1alpha1.NetworkDeviceSelector{NetworkDeviceBus: "0000:01*"}, []string{"eth0", "eth1"}},
		{"physical links only", v1alpha1.NetworkDeviceSelector{NetworkDevicePhysical: &physical}, []string{"eth0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := node.LinkNames(node.SelectLinks(&tc.selector, []*network.LinkStatus{eth0, eth1}))
			if len(got) == 0 {
				got = nil
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
