package node

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/ryanuber/go-glob"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
)

// VIP is where the shared address of a node's applied config lands. Talos drops a
// machine.network.interfaces entry whose interface names no link, or whose deviceSelector
// matches none, without an error: the address then never comes up and nothing says why.
type VIP struct {
	// Address is vip.ip of the first interfaces entry that has one; "" when the config has none.
	Address string
	// Link is the link the entry resolves to; "" when it resolves to none.
	Link string
	// Problem says why the address cannot come up on this node, e.g. `no link matches interface
	// "eth0"; links: enp1s0`; "" when it resolved.
	Problem string
}

// Live is the VIP as a refresh stores it: the address, followed by the problem if there is one.
func (v VIP) Live() string {
	if v.Problem == "" {
		return v.Address
	}
	return fmt.Sprintf("%s (%s)", v.Address, v.Problem)
}

// ResolveVIP finds the first machine.network.interfaces entry with a vip.ip and the link it
// lands on, as Talos v1.11's DeviceConfig and OperatorVIPConfig controllers do: by
// deviceSelector when the entry has one, else by interface name, which may also be a link's
// alias or one of its altNames. links are the node's LinkStatuses.
func ResolveVIP(cfg config.Provider, links []*network.LinkStatus) VIP {
	if cfg == nil || cfg.Machine() == nil {
		return VIP{}
	}
	// COSI lists links by id; Talos takes the first a selector matches in that order.
	links = slices.SortedFunc(slices.Values(links), func(a, b *network.LinkStatus) int {
		return strings.Compare(a.Metadata().ID(), b.Metadata().ID())
	})
	for _, device := range cfg.Machine().Network().Devices() {
		if device.VIPConfig() == nil || device.VIPConfig().IP() == "" {
			continue
		}
		vip := VIP{Address: device.VIPConfig().IP()}
		var wanted string
		if selector := device.Selector(); selector != nil {
			// Talos configures every link a selector matches; the first is reported.
			if matched := SelectLinks(selector, links); len(matched) > 0 {
				vip.Link = matched[0].Metadata().ID()
			}
			wanted = "deviceSelector " + DescribeSelector(selector)
		} else {
			// The resolver maps names, aliases and altNames to link names; an unknown name is
			// returned as is, and a VIP operator then waits for a link that never appears.
			all := func() iter.Seq[*network.LinkStatus] { return slices.Values(links) }
			name := network.NewLinkResolver(all).Resolve(device.Interface())
			if slices.ContainsFunc(links, func(l *network.LinkStatus) bool { return l.Metadata().ID() == name }) {
				vip.Link = name
			}
			wanted = fmt.Sprintf("interface %q", device.Interface())
		}
		switch {
		case vip.Link == "":
			vip.Problem = fmt.Sprintf("no link matches %s; links: %s", wanted, describeLinks(links))
		case device.Ignore():
			// OperatorVIPConfig skips an ignored interface's VIP.
			vip.Problem = fmt.Sprintf("link %s has ignore: true", vip.Link)
			vip.Link = ""
		}
		return vip
	}
	return VIP{}
}

// SelectLinks is Talos v1.11's DeviceConfigController.selectDevices: every field the selector
// sets must match, as a case-sensitive glob (ryanuber/go-glob, Talos' own); physical, when set,
// compares with the link's physical flag. A selector that sets nothing matches nothing. The
// simulator has its own port (test/sim/node/links.go selectLinks) on purpose: a bug copied into
// both would pass every test; each is checked against Talos' own cases.
func SelectLinks(selector talosconfig.NetworkDeviceSelector, links []*network.LinkStatus) []*network.LinkStatus {
	var matched []*network.LinkStatus
	for _, l := range links {
		spec := l.TypedSpec()
		var match, decided bool
		for _, pair := range [][2]string{
			{selector.HardwareAddress(), spec.HardwareAddr.String()},
			{selector.PermanentAddress(), spec.PermanentAddr.String()},
			{selector.PCIID(), spec.PCIID},
			{selector.KernelDriver(), spec.Driver},
			{selector.Bus(), spec.BusPath},
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
			match = *physical == spec.Physical()
		}
		if match {
			matched = append(matched, l)
		}
	}
	return matched
}

// DescribeSelector writes the fields a selector sets as the config spells them:
// {busPath: "0000:02:*", physical: true}.
func DescribeSelector(selector talosconfig.NetworkDeviceSelector) string {
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

// LinkNames are the links' names, sorted.
func LinkNames(links []*network.LinkStatus) []string {
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Metadata().ID()
	}
	slices.Sort(names)
	return names
}

func describeLinks(links []*network.LinkStatus) string {
	if len(links) == 0 {
		return "none"
	}
	return strings.Join(LinkNames(links), ", ")
}
