// Package main is nodecheck: it reads what each Talos node actually runs (release, booted
// schematic, applied install image and Kubernetes version) and compares it with what the stack
// declares. The talos
// provider never reads a node back, so this is the only way drift made on a node shows up.
package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Expected is what the stack declares for its nodes.
type Expected struct {
	TalosVersion      string         `json:"talosVersion"`
	SchematicID       string         `json:"schematicId"`
	KubernetesVersion string         `json:"kubernetesVersion"`
	Nodes             []ExpectedNode `json:"nodes"`
	// VIP is the shared address the control planes should hold (network.vip), if any.
	VIP string `json:"vip,omitempty"`
}

// ExpectedNode is one declared node.
type ExpectedNode struct {
	Name         string `json:"name"`
	Address      string `json:"address"`
	InstallImage string `json:"installImage"`
	Role         string `json:"role"`
}

// Observed is what a node reported.
type Observed struct {
	TalosVersion string
	SchematicID  string
	InstallImage string
	// KubernetesVersion is the tag of the kubelet image in the applied config.
	KubernetesVersion string
	// Addresses are the node's addresses as CIDRs with their link: 10.20.0.10/32 on eno1.
	Addresses map[string]string
	// Links are the names of the node's network links.
	Links []string
}

// Result is the verdict for one node: Err when it could not be read, Drift otherwise.
type Result struct {
	Node     ExpectedNode
	Observed Observed
	Drift    []string
	Err      error
}

// Compare lists every difference between the declared and the observed node.
func Compare(want Expected, node ExpectedNode, got Observed) []string {
	var drift []string
	if want.TalosVersion != "" && got.TalosVersion != want.TalosVersion {
		drift = append(drift, fmt.Sprintf("runs Talos %s, stack declares %s (upgrade with talosctl upgrade)", got.TalosVersion, want.TalosVersion))
	}
	if want.SchematicID != "" && got.SchematicID != want.SchematicID {
		drift = append(drift, fmt.Sprintf("booted schematic %s, stack declares %s (its extensions differ)", short(got.SchematicID), short(want.SchematicID)))
	}
	if node.InstallImage != "" && got.InstallImage != node.InstallImage {
		drift = append(drift, fmt.Sprintf("applied config installs %s, stack declares %s (config changed on the node)", got.InstallImage, node.InstallImage))
	}
	if want.KubernetesVersion != "" && got.KubernetesVersion != "" {
		have, declared := strings.TrimPrefix(got.KubernetesVersion, "v"), strings.TrimPrefix(want.KubernetesVersion, "v")
		switch c := compareVersions(have, declared); {
		case c > 0:
			// talosctl upgrade-k8s rewrites the images in the live config; the stack's older
			// version would silently downgrade the cluster on the next apply.
			drift = append(drift, fmt.Sprintf("applied config runs Kubernetes %s, stack declares %s (set kubernetesVersion to %s before the next pulumi up, or it downgrades the node)", have, declared, have))
		case c < 0:
			drift = append(drift, fmt.Sprintf("applied config runs Kubernetes %s, stack declares %s (roll it out with talosctl upgrade-k8s --to %s)", have, declared, declared))
		}
	}
	return drift
}

// compareVersions compares dotted numeric versions (1.34.1): -1, 0 or 1.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		// A missing or non-numeric part compares as 0.
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// imageTag is the tag of an image reference: ghcr.io/siderolabs/kubelet:v1.34.1 gives v1.34.1.
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return ""
}

func short(id string) string {
	if id == "" {
		return "(none)"
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Observe reads one node over mutual TLS with the talosconfig.
func Observe(ctx context.Context, tc *clientconfig.Config, address string) (Observed, error) {
	c, err := client.New(ctx, client.WithConfig(tc), client.WithEndpoints(address))
	if err != nil {
		return Observed{}, err
	}
	defer c.Close() //nolint:errcheck
	ctx = client.WithNode(ctx, address)

	var got Observed
	version, err := c.Version(ctx)
	if err != nil {
		return got, fmt.Errorf("version: %w", err)
	}
	if msgs := version.GetMessages(); len(msgs) > 0 {
		got.TalosVersion = msgs[0].GetVersion().GetTag()
	}
	exts, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		return got, fmt.Errorf("extensions: %w", err)
	}
	for ext := range exts.All() {
		if ext.TypedSpec().Metadata.Name == "schematic" {
			got.SchematicID = ext.TypedSpec().Metadata.Version
		}
	}
	cfg, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if err != nil {
		return got, fmt.Errorf("machine config: %w", err)
	}
	got.InstallImage = cfg.Config().Machine().Install().Image()
	got.KubernetesVersion = imageTag(cfg.Config().Machine().Kubelet().Image())
	addresses, err := safe.StateListAll[*network.AddressStatus](ctx, c.COSI)
	if err != nil {
		return got, fmt.Errorf("addresses: %w", err)
	}
	got.Addresses = map[string]string{}
	for a := range addresses.All() {
		got.Addresses[a.TypedSpec().Address.String()] = a.TypedSpec().LinkName
	}
	links, err := safe.StateListAll[*network.LinkStatus](ctx, c.COSI)
	if err != nil {
		return got, fmt.Errorf("links: %w", err)
	}
	for l := range links.All() {
		got.Links = append(got.Links, l.Metadata().ID())
	}
	return got, nil
}

// VIPVerdict says which control plane holds the stack's VIP. Talos ignores a VIP entry for a link
// the node lacks without an error, so a VIP that is on no control plane is the only sign of it.
// It returns "" when the stack declares no VIP or no control plane could be read.
func VIPVerdict(want Expected, results []Result) (line string, down bool) {
	if want.VIP == "" {
		return "", false
	}
	var read []string
	for _, r := range results {
		if r.Node.Role != "controlplane" || r.Err != nil {
			continue
		}
		if link, ok := r.Observed.Addresses[want.VIP+"/32"]; ok {
			return fmt.Sprintf("vip %s: up on %s (%s)", want.VIP, r.Node.Name, link), false
		}
		read = append(read, fmt.Sprintf("%s has %s", r.Node.Name, strings.Join(r.Observed.Links, ", ")))
	}
	if len(read) == 0 {
		return "", false
	}
	return fmt.Sprintf("vip %s: down: no control plane holds it (%s); check network.vip's interface or deviceSelector against these links (talosctl get links -n <node>), and that etcd is up",
		want.VIP, strings.Join(read, "; ")), true
}

// Check observes every declared node and compares.
func Check(ctx context.Context, tc *clientconfig.Config, want Expected) []Result {
	results := make([]Result, 0, len(want.Nodes))
	for _, node := range want.Nodes {
		got, err := Observe(ctx, tc, node.Address)
		if err != nil {
			results = append(results, Result{Node: node, Err: err})
			continue
		}
		results = append(results, Result{Node: node, Observed: got, Drift: Compare(want, node, got)})
	}
	return results
}

// Line is the one-line verdict for a node.
func (r Result) Line() string {
	prefix := fmt.Sprintf("node %s (%s)", r.Node.Name, r.Node.Address)
	switch {
	case r.Err != nil:
		return fmt.Sprintf("%s: unreachable: %v", prefix, r.Err)
	case len(r.Drift) == 0:
		return prefix + ": no drift"
	default:
		return fmt.Sprintf("%s: drift: %s", prefix, strings.Join(r.Drift, "; "))
	}
}
