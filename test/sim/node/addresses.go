package node

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
)

// NodeAddress is how the machine's own address (the one the simulator serves on) reaches its
// first link: from the site's DHCP server, or as a static address of the config.
type NodeAddress struct {
	// Link is the first link, where the site's network gives the machine its address.
	Link string `json:"link"`
	// Source is "dhcp" or "static"; "" when the link has no address.
	Source string `json:"source,omitempty"`
	// Lost says why the link has no address: the machine no longer answers on it.
	Lost string `json:"lost,omitempty"`
}

// nodeAddressing decides whether the first link carries the machine's address, as Talos'
// network controllers do (v1.11.5 internal/app/machined/pkg/controllers/network):
//   - LinkConfigController turns every machine.network.interfaces entry that resolves to a link,
//     even one with only a vip, into a LinkSpec in the ConfigMachineConfiguration layer
//     (link_config.go);
//   - OperatorConfigController runs the default DHCPv4 only on physical links that no such spec
//     names and that are not ignored (operator_config.go, "operators from defaults");
//   - an entry's own `dhcp: true` runs DHCPv4 on it, and its `addresses` are static addresses
//     (AddressConfigController).
//
// The site's DHCP server hands out the machine's address on the first link only; with no config
// (maintenance) that link runs the default DHCP.
func nodeAddressing(cfg config.Provider, ip net.IP, links []link) NodeAddress {
	first := &links[0]
	addr := NodeAddress{Link: first.name}
	if cfg == nil || cfg.Machine() == nil {
		addr.Source = "dhcp"
		return addr
	}
	var named []string
	for _, device := range cfg.Machine().Network().Devices() {
		var targets []*link
		if selector := device.Selector(); selector != nil {
			targets = selectLinks(selector, links)
		} else if i := slices.IndexFunc(links, func(l link) bool { return l.name == device.Interface() }); i >= 0 {
			targets = []*link{&links[i]}
		}
		if !slices.Contains(targets, first) {
			continue
		}
		if device.Ignore() {
			addr.Lost = fmt.Sprintf("link %s is ignored (machine.network.interfaces ignore: true): Talos configures nothing on it, not even DHCP", first.name)
			return addr
		}
		if device.DHCP() {
			addr.Source = "dhcp"
			return addr
		}
		for _, cidr := range device.Addresses() {
			if static, _, err := net.ParseCIDR(cidr); err == nil && static.Equal(ip) {
				addr.Source = "static"
				return addr
			}
		}
		named = append(named, describeEntry(device.Interface(), device.Selector() != nil, device.Addresses()))
	}
	if len(named) == 0 {
		addr.Source = "dhcp"
		return addr
	}
	addr.Lost = fmt.Sprintf("link %s is named by machine.network.interfaces (%s) without dhcp: true or the address %s: "+
		"Talos runs no default DHCP on a link the config names, so it has no address", first.name, strings.Join(named, "; "), ip)
	return addr
}

func describeEntry(name string, bySelector bool, addresses []string) string {
	what := "interface " + name
	if bySelector {
		what = "a deviceSelector"
	}
	if len(addresses) == 0 {
		return what + " with no addresses"
	}
	return what + " with addresses " + strings.Join(addresses, ", ")
}

// addressLost is the config's verdict on the machine's address, "" while it has one.
func (n *Node) addressLost() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state.NodeAddress = nodeAddressing(n.cfg, n.address, n.links)
	return n.state.NodeAddress.Lost
}

// dropOffNetwork is what a running machine does when its active config takes its address away:
// the network controllers remove it moments after ApplyConfiguration answered (Talos replies
// right after SetConfig), so the reply still reaches the caller, and nothing reaches the machine
// afterwards. It stays powered; only a config that gives the address back, which nobody can send
// to it now, or a reset from the control endpoint would bring it back.
func (n *Node) dropOffNetwork(reason string) {
	n.mu.Lock()
	srv := n.srv
	n.lis, n.srv = nil, nil
	n.state.Up = false
	n.mu.Unlock()
	if srv == nil {
		return
	}
	go func() {
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second): // event streams never end by themselves
			srv.Stop()
		}
		n.trust.record(n.address.String(), TimelineDown, "address lost: "+reason)
		n.trust.settle()
	}()
}
