package node

import (
	"slices"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
)

// The cases of Talos' own test of selectDevices (internal/app/machined/pkg/controllers/network/
// device_config_test.go TestSelectors): eth0 is a physical NIC with driver "thedriver" on bus
// 0000:01:00.0, eth1 a link of no type on bus 0000:01:01.0. talosnode ports the same function on
// its own (talosnode/node/vip.go SelectLinks) and checks the same cases: one bug must not pass
// both the oracle and the checker.
func TestSelectLinksOnTalosOwnCases(t *testing.T) {
	links := []link{
		{name: "eth1", spec: network.LinkStatusSpec{BusPath: "0000:01:01.0"}},
		{name: "eth0", spec: network.LinkStatusSpec{Driver: "thedriver", BusPath: "0000:01:00.0", Type: nethelpers.LinkEther}},
	}
	physical := true
	for _, tc := range []struct {
		name     string
		selector v1alpha1.NetworkDeviceSelector
		want     []string
	}{
		{"by kernel driver", v1alpha1.NetworkDeviceSelector{NetworkDeviceKernelDriver: "thedriver"}, []string{"eth0"}},
		{"a driver no link has", v1alpha1.NetworkDeviceSelector{NetworkDeviceKernelDriver: "no-match"}, nil},
		{"a bus path glob matching both, in name order", v1alpha1.NetworkDeviceSelector{NetworkDeviceBus: "0000:01*"}, []string{"eth0", "eth1"}},
		{"physical links only", v1alpha1.NetworkDeviceSelector{NetworkDevicePhysical: &physical}, []string{"eth0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, l := range selectLinks(&tc.selector, links) {
				got = append(got, l.name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
