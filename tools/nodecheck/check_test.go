package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"talos-cluster/sim/node"
)

const (
	schematic = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"
	installer = "factory.talos.dev/installer/" + schematic + ":v1.11.5"
)

type lab struct {
	bundle      *secrets.Bundle
	talosconfig *clientconfig.Config
}

func newLab(t *testing.T) lab {
	t.Helper()
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersionCurrent)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput("lab", "https://127.0.5.1:6443", "1.34.1", generate.WithSecretsBundle(bundle))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	return lab{bundle: bundle, talosconfig: tc}
}

// configure boots a simulated control plane running `running` and applies a config installing `image`,
// as the provider's first apply does.
func (l lab) configure(t *testing.T, trust *node.Trust, address, running, image string) {
	t.Helper()
	l.configureKubernetes(t, trust, address, running, image, "1.34.1")
}

// configureKubernetes is configure with the config generated for another Kubernetes version, as
// after talosctl upgrade-k8s.
func (l lab) configureKubernetes(t *testing.T, trust *node.Trust, address, running, image, kubernetes string) {
	t.Helper()
	l.configureWith(t, trust, address, running, image, kubernetes, "")
}

// configureWith is configureKubernetes with a strategic-merge patch (YAML) on the generated config.
func (l lab) configureWith(t *testing.T, trust *node.Trust, address, running, image, kubernetes, patch string) {
	t.Helper()
	n, err := node.New(address, node.APIPort, running, schematic, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	in, err := generate.NewInput("lab", "https://127.0.5.1:6443", kubernetes, generate.WithSecretsBundle(l.bundle), generate.WithInstallImage(image))
	if err != nil {
		t.Fatal(err)
	}
	generated, err := in.Config(talosmachine.TypeControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	var cfg configpatcher.Input = configpatcher.WithConfig(generated)
	if patch != "" {
		p, err := configpatcher.LoadPatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err = configpatcher.Apply(cfg, []configpatcher.Patch{p}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(context.Background(), client.WithEndpoints(n.Addr()), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.ApplyConfiguration(client.WithNode(ctx, address), &machine.ApplyConfigurationRequest{Data: data}); err != nil {
		t.Fatal(err)
	}
}

func expected(nodes ...ExpectedNode) Expected {
	return Expected{TalosVersion: "v1.11.5", SchematicID: schematic, KubernetesVersion: "1.34.1", Nodes: nodes}
}

func checkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNodesAsDeclaredShowNoDrift(t *testing.T) {
	l, trust := newLab(t), node.NewTrust()
	l.configure(t, trust, "127.0.5.11", "v1.11.5", installer)
	l.configure(t, trust, "127.0.5.12", "v1.11.5", installer)
	results := Check(checkCtx(t), l.talosconfig, expected(
		ExpectedNode{Name: "cp-1", Address: "127.0.5.11", InstallImage: installer},
		ExpectedNode{Name: "cp-2", Address: "127.0.5.12", InstallImage: installer},
	))
	for _, r := range results {
		if r.Line() != "node "+r.Node.Name+" ("+r.Node.Address+"): no drift" {
			t.Errorf("got %q", r.Line())
		}
	}
}

func TestAConfigChangedOnTheNodeIsDrift(t *testing.T) {
	l, trust := newLab(t), node.NewTrust()
	l.configure(t, trust, "127.0.5.21", "v1.11.5", "ghcr.io/siderolabs/installer:v1.11.5")
	r := Check(checkCtx(t), l.talosconfig, expected(ExpectedNode{Name: "cp-1", Address: "127.0.5.21", InstallImage: installer}))[0]
	want := "node cp-1 (127.0.5.21): drift: applied config installs ghcr.io/siderolabs/installer:v1.11.5, stack declares " + installer + " (config changed on the node)"
	if r.Line() != want {
		t.Fatalf("got  %q\nwant %q", r.Line(), want)
	}
}

func TestANodeOnAnotherReleaseIsDrift(t *testing.T) {
	l, trust := newLab(t), node.NewTrust()
	l.configure(t, trust, "127.0.5.31", "v1.11.4", installer)
	r := Check(checkCtx(t), l.talosconfig, expected(ExpectedNode{Name: "cp-1", Address: "127.0.5.31", InstallImage: installer}))[0]
	if len(r.Drift) != 1 || !strings.Contains(r.Drift[0], "runs Talos v1.11.4, stack declares v1.11.5") {
		t.Fatalf("got %q", r.Line())
	}
}

func TestKubernetesUpgradedOnTheNodeIsDriftThatWarnsOfADowngrade(t *testing.T) {
	l, trust := newLab(t), node.NewTrust()
	l.configureKubernetes(t, trust, "127.0.5.51", "v1.11.5", installer, "1.34.2")
	r := Check(checkCtx(t), l.talosconfig, expected(ExpectedNode{Name: "cp-1", Address: "127.0.5.51", InstallImage: installer}))[0]
	want := "node cp-1 (127.0.5.51): drift: applied config runs Kubernetes 1.34.2, stack declares 1.34.1 (set kubernetesVersion to 1.34.2 before the next pulumi up, or it downgrades the node)"
	if r.Line() != want {
		t.Fatalf("got  %q\nwant %q", r.Line(), want)
	}
}

func TestKubernetesBehindTheStackIsDriftToRollOut(t *testing.T) {
	drift := Compare(expected(), ExpectedNode{}, Observed{TalosVersion: "v1.11.5", SchematicID: schematic, KubernetesVersion: "v1.33.6"})
	if len(drift) != 1 || drift[0] != "applied config runs Kubernetes 1.33.6, stack declares 1.34.1 (roll it out with talosctl upgrade-k8s --to 1.34.1)" {
		t.Fatalf("got %q", drift)
	}
}

func TestImageTag(t *testing.T) {
	for image, tag := range map[string]string{
		"ghcr.io/siderolabs/kubelet:v1.34.1":                "v1.34.1",
		"registry.local:5000/kubelet:v1.33.6":               "v1.33.6",
		"registry.local:5000/kubelet":                       "",
		"ghcr.io/siderolabs/kubelet:v1.34.1@sha256:0123abc": "v1.34.1",
	} {
		if got := imageTag(image); got != tag {
			t.Errorf("imageTag(%q) = %q, want %q", image, got, tag)
		}
	}
}

func TestAnUnreachableNodeIsReportedNotHidden(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r := Check(ctx, l.talosconfig, expected(ExpectedNode{Name: "cp-9", Address: "127.0.5.99"}))[0]
	if r.Err == nil || !strings.HasPrefix(r.Line(), "node cp-9 (127.0.5.99): unreachable: ") {
		t.Fatalf("got %q", r.Line())
	}
}

func TestCompareNamesEveryDifference(t *testing.T) {
	drift := Compare(expected(), ExpectedNode{InstallImage: installer}, Observed{TalosVersion: "v1.10.7", SchematicID: "abc", InstallImage: "other"})
	if len(drift) != 3 {
		t.Fatalf("got %v", drift)
	}
}

func TestExitCodes(t *testing.T) {
	l, trust := newLab(t), node.NewTrust()
	l.configure(t, trust, "127.0.5.41", "v1.11.5", installer)
	dir := t.TempDir()
	tcPath := filepath.Join(dir, "talosconfig")
	if err := l.talosconfig.Save(tcPath); err != nil {
		t.Fatal(err)
	}
	write := func(want Expected) string {
		path := filepath.Join(dir, "expect.json")
		data, _ := json.Marshal(want)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if code := run(tcPath, write(expected(ExpectedNode{Name: "cp-1", Address: "127.0.5.41", InstallImage: installer})), 20*time.Second); code != 0 {
		t.Errorf("no drift: exit %d", code)
	}
	if code := run(tcPath, write(expected(ExpectedNode{Name: "cp-1", Address: "127.0.5.41", InstallImage: "other"})), 20*time.Second); code != 1 {
		t.Errorf("drift: exit %d", code)
	}
	if code := run(tcPath, write(expected(ExpectedNode{Name: "cp-9", Address: "127.0.5.99"})), 3*time.Second); code != 2 {
		t.Errorf("unreachable: exit %d", code)
	}
	if code := run("", "", time.Second); code != 2 {
		t.Errorf("missing flags: exit %d", code)
	}
}

// bootstrap starts etcd on a configured control plane, as the provider's Bootstrap does.
func (l lab) bootstrap(t *testing.T, address string) {
	t.Helper()
	c, err := client.New(checkCtx(t), client.WithConfig(l.talosconfig), client.WithEndpoints(address))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() //nolint:errcheck
	if err := c.Bootstrap(client.WithNode(checkCtx(t), address), &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestVIPVerdict(t *testing.T) {
	const vip = "127.0.5.100"
	for _, tc := range []struct {
		name, link string
		want       string
		down       bool
	}{
		{"on the node's link", "enp1s0", "vip 127.0.5.100: up on cp-1 (enp1s0)", false},
		{"on a link the nodes lack", "eth0", "vip 127.0.5.100: down: no control plane holds it (cp-1 has enp1s0; cp-2 has enp1s0); check network.vip's interface or deviceSelector against these links (talosctl get links -n <node>), and that etcd is up", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, trust := newLab(t), node.NewTrust()
			patch := "machine:\n  network:\n    interfaces:\n      - interface: " + tc.link + "\n        vip:\n          ip: " + vip + "\n"
			base := map[string]string{"enp1s0": "127.0.5.6", "eth0": "127.0.5.8"}[tc.link]
			cp1, cp2 := base+"1", base+"2"
			l.configureWith(t, trust, cp1, "v1.11.5", installer, "1.34.1", patch)
			l.configureWith(t, trust, cp2, "v1.11.5", installer, "1.34.1", patch)
			l.bootstrap(t, cp1)
			want := expected(
				ExpectedNode{Name: "cp-1", Address: cp1, InstallImage: installer, Role: "controlplane"},
				ExpectedNode{Name: "cp-2", Address: cp2, InstallImage: installer, Role: "controlplane"},
			)
			want.VIP = vip
			line, down := VIPVerdict(want, Check(checkCtx(t), l.talosconfig, want))
			if line != tc.want || down != tc.down {
				t.Fatalf("got  %q (down %v)\nwant %q (down %v)", line, down, tc.want, tc.down)
			}
		})
	}
}

func TestNoVIPNoVerdict(t *testing.T) {
	if line, down := VIPVerdict(expected(), []Result{{Node: ExpectedNode{Role: "controlplane"}}}); line != "" || down {
		t.Fatalf("got %q", line)
	}
}
