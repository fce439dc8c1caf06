package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/ryanuber/go-glob"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
)

// link is one network interface of a simulated machine: a virtio NIC on its own PCI bus, as a
// QEMU/KVM guest or most metal with predictable interface names shows it.
type link struct {
	name string
	spec network.LinkStatusSpec
}

// linkMulticast is IFF_MULTICAST, spelled LinkMulticase in machinery 1.11 and LinkMulticast in 1.12.
const linkMulticast = nethelpers.LinkFlag(1 << 12)

// newLinks gives each named link a deterministic identity: a locally administered MAC made of
// the node's IPv4 address and the link's index (02:a:b:c:d:i), and PCI bus 0000:0N:00.0.
func newLinks(ip net.IP, names []string) ([]link, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("a node needs at least one link")
	}
	if len(names) > 255 {
		return nil, fmt.Errorf("%d links: at most 255", len(names))
	}
	v4 := ip.To4()
	links := make([]link, 0, len(names))
	for i, name := range names {
		if name == "" || strings.ContainsAny(name, "/ ") || slices.ContainsFunc(links, func(l link) bool { return l.name == name }) {
			return nil, fmt.Errorf("link name %q: empty, duplicate or not a Linux interface name", name)
		}
		mac := nethelpers.HardwareAddr{0x02, v4[0], v4[1], v4[2], v4[3], byte(i)}
		links = append(links, link{name: name, spec: network.LinkStatusSpec{
			Index:            uint32(i) + 2, // 1 is lo
			Type:             nethelpers.LinkEther,
			Flags:            nethelpers.LinkFlags(nethelpers.LinkUp | nethelpers.LinkBroadcast | nethelpers.LinkRunning | linkMulticast | nethelpers.LinkLowerUp),
			HardwareAddr:     mac,
			PermanentAddr:    mac,
			BroadcastAddr:    nethelpers.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			MTU:              1500,
			QueueDisc:        "pfifo_fast",
			OperationalState: nethelpers.OperStateUp,
			BusPath:          fmt.Sprintf("0000:%02x:00.0", i+1),
			PCIID:            "1AF4:1041",
			Driver:           "virtio_net",
			DriverVersion:    "1.0.0",
			VendorID:         "0x1af4",
			ProductID:        "0x1041",
			Vendor:           "Red Hat, Inc.",
			Product:          "Virtio 1.0 network device",
			LinkState:        true,
			SpeedMegabits:    -1,
			Port:             nethelpers.Other,
			Duplex:           nethelpers.Unknown,
		}})
	}
	return links, nil
}

func linkNames(links []link) []string {
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.name
	}
	return names
}

// VIPStatus is what became of the shared IP (`vip`) a node's config declares.
type VIPStatus struct {
	Address string `json:"address"`
	// Link is where the config puts it, "" when no link matches.
	Link string `json:"link"`
	// Up is true on the one control plane of the cluster that holds the address.
	Up bool `json:"up"`
	// Reason says why the address is not up here.
	Reason string `json:"reason"`
}

// resolveVIP finds the first machine.network.interfaces entry with a vip and the link it lands
// on, as Talos' DeviceConfig and OperatorVIPConfig controllers do: by interface name, or by
// deviceSelector. An entry that matches no link is dropped without an error by Talos; here the
// reason is kept for the report. nil when the config declares no VIP.
func resolveVIP(cfg config.Provider, links []link) (*VIPStatus, *link) {
	if cfg == nil || cfg.Machine() == nil {
		return nil, nil
	}
	for _, device := range cfg.Machine().Network().Devices() {
		if device.VIPConfig() == nil || device.VIPConfig().IP() == "" {
			continue
		}
		vip := &VIPStatus{Address: device.VIPConfig().IP()}
		var target *link
		if selector := device.Selector(); selector != nil {
			if matches := selectLinks(selector, links); len(matches) > 0 {
				// Talos configures every matching link; the first one (by name, the order
				// of a COSI list) is where the VIP operator's address lands first.
				target = matches[0]
			} else {
				vip.Reason = fmt.Sprintf("no link matches deviceSelector %s (links: %s)", describeSelector(selector), strings.Join(linkNames(links), ", "))
			}
		} else {
			if i := slices.IndexFunc(links, func(l link) bool { return l.name == device.Interface() }); i >= 0 {
				target = &links[i]
			} else {
				vip.Reason = fmt.Sprintf("no link matches interface %q (links: %s)", device.Interface(), strings.Join(linkNames(links), ", "))
			}
		}
		if target != nil && device.Ignore() {
			vip.Reason = fmt.Sprintf("link %s is ignored (ignore: true)", target.name)
			target = nil
		}
		if target != nil {
			vip.Link = target.name
		}
		return vip, target
	}
	return nil, nil
}

// selectLinks is Talos' DeviceConfigController.selectDevices: every field the selector sets must
// match, hardware addresses, PCI ID, driver and bus path as globs; physical compares exactly.
// A selector that sets nothing matches nothing. talosnode has its own port (talosnode/node/vip.go
// SelectLinks) on purpose: a bug copied into both would pass every test; each is checked against
// Talos' own cases (links_test.go).
func selectLinks(selector talosconfig.NetworkDeviceSelector, links []link) []*link {
	sorted := make([]*link, len(links))
	for i := range links {
		sorted[i] = &links[i]
	}
	slices.SortFunc(sorted, func(a, b *link) int { return strings.Compare(a.name, b.name) })
	var matched []*link
	for _, l := range sorted {
		match, decided := false, false
		for _, pair := range [][2]string{
			{selector.HardwareAddress(), l.spec.HardwareAddr.String()},
			{selector.PermanentAddress(), l.spec.PermanentAddr.String()},
			{selector.PCIID(), l.spec.PCIID},
			{selector.KernelDriver(), l.spec.Driver},
			{selector.Bus(), l.spec.BusPath},
		} {
			if pair[0] == "" {
				continue
			}
			match, decided = glob.Glob(pair[0], pair[1]), true
			if !match {
				break
			}
		}
		if physical := selector.Physical(); physical != nil && (match || !decided) {
			match = *physical == l.spec.Physical()
		}
		if match {
			matched = append(matched, l)
		}
	}
	return matched
}

func describeSelector(selector talosconfig.NetworkDeviceSelector) string {
	var fields []string
	for _, f := range [][2]string{
		{"busPath", selector.Bus()},
		{"hardwareAddr", selector.HardwareAddress()},
		{"permanentAddr", selector.PermanentAddress()},
		{"pciID", selector.PCIID()},
		{"driver", selector.KernelDriver()},
	} {
		if f[1] != "" {
			fields = append(fields, fmt.Sprintf("%s: %q", f[0], f[1]))
		}
	}
	if p := selector.Physical(); p != nil {
		fields = append(fields, fmt.Sprintf("physical: %t", *p))
	}
	return "{" + strings.Join(fields, ", ") + "}"
}

// vipAddress is the AddressStatus Talos' VIP operator leaves on the holder: the shared IP as a
// host route on the link.
func vipAddress(vip *VIPStatus, l *link) (*network.AddressStatus, error) {
	addr, err := netip.ParseAddr(vip.Address)
	if err != nil {
		return nil, fmt.Errorf("vip %q: %w", vip.Address, err)
	}
	prefix := netip.PrefixFrom(addr, addr.BitLen())
	res := network.NewAddressStatus(network.NamespaceName, network.AddressID(l.name, prefix))
	family := nethelpers.FamilyInet4
	if addr.Is6() {
		family = nethelpers.FamilyInet6
	}
	*res.TypedSpec() = network.AddressStatusSpec{
		Address:   prefix,
		Local:     addr,
		LinkIndex: l.spec.Index,
		LinkName:  l.name,
		Family:    family,
		Scope:     nethelpers.ScopeGlobal,
		Flags:     nethelpers.AddressFlags(nethelpers.AddressPermanent),
	}
	return res, nil
}

// showVIP makes the node's AddressStatuses what the election decided: the VIP on its link
// while this node holds it, nothing else (the simulator models no other address).
func (n *Node) showVIP(ctx context.Context, held *network.AddressStatus) error {
	list, err := n.cosi.List(ctx, network.NewAddressStatus(network.NamespaceName, "").Metadata())
	if err != nil {
		return err
	}
	for _, res := range list.Items {
		if held == nil || res.Metadata().ID() != held.Metadata().ID() {
			if err := n.cosi.Destroy(ctx, res.Metadata()); err != nil {
				return err
			}
		}
	}
	if held == nil {
		return nil
	}
	if _, err := n.cosi.Get(ctx, held.Metadata()); err == nil {
		return nil
	}
	return n.cosi.Create(ctx, held)
}
