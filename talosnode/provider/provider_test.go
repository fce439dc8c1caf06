package provider_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/provider"
	"talos-cluster/talosnode/redact"
)

func server(t *testing.T) integration.Server {
	t.Helper()
	prov, err := provider.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := integration.NewServer(context.Background(), provider.Name, semver.MustParse("0.1.0"), integration.WithProvider(prov))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func urn(name string) presource.URN {
	return presource.NewURN("test", "talos-cluster", "", "talosnode:index:NodeState", name)
}

// declared is what TalosCluster passes for a node: secrets as the talos provider marks them.
func declared(l *simtest.Cluster, address string, config []byte, timeout string) property.Map {
	m := map[string]property.Value{
		"node": property.New(address),
		"clientConfiguration": property.New(map[string]property.Value{
			"caCertificate":     property.New(l.Credentials.CACertificate),
			"clientCertificate": property.New(l.Credentials.ClientCertificate),
			"clientKey":         property.New(l.Credentials.ClientKey).WithSecret(true),
		}),
		"talosVersion":         property.New(simtest.TalosVersion),
		"schematicId":          property.New(simtest.Schematic),
		"installerImage":       property.New(simtest.Installer),
		"kubernetesVersion":    property.New(simtest.KubernetesVersion),
		"machineConfiguration": property.New(string(config)).WithSecret(true),
	}
	if timeout != "" {
		m["timeout"] = property.New(timeout)
	}
	return property.NewMap(m)
}

func check(t *testing.T, s integration.Server, name string, inputs property.Map) p.CheckResponse {
	t.Helper()
	resp, err := s.Check(p.CheckRequest{Urn: urn(name), Inputs: inputs})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return resp
}

func TestCheckComputesThePlainRedactedConfigAndKeepsSecretsSecret(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	want, err := redact.FromYAML(config)
	if err != nil {
		t.Fatal(err)
	}
	inputs := declared(l, "127.0.10.1", config, "").
		Set("talosVersion", property.New("1.11.5")).
		Set("kubernetesVersion", property.New("v1.34.1")).
		Set("config", property.New(map[string]property.Value{"machine.type": property.New("a value given by the program")}))
	resp := check(t, server(t), "cp-1", inputs)
	if len(resp.Failures) != 0 {
		t.Fatalf("failures: %v", resp.Failures)
	}
	got := resp.Inputs
	for _, tc := range []struct {
		key    string
		value  any
		secret bool
	}{
		{"configHash", want.Hash, false},
		{"machineConfiguration", string(config), true},
		{"talosVersion", "v1.11.5", false},
		{"kubernetesVersion", "1.34.1", false},
		{"timeout", provider.DefaultTimeout, false},
	} {
		v := got.Get(tc.key)
		if v.IsComputed() || !v.IsString() || v.AsString() != tc.value || v.Secret() != tc.secret {
			t.Errorf("%s: got %v (secret %t), want %.40q (secret %t)", tc.key, v, v.Secret(), tc.value, tc.secret)
		}
	}
	// config is the redacted config, one entry per value keyed by its path.
	keys, err := redact.Keys(want.Redacted)
	if err != nil {
		t.Fatal(err)
	}
	wantConfig := map[string]property.Value{}
	for k, v := range keys {
		wantConfig[k] = property.New(v)
	}
	if c := got.Get("config"); c.Secret() || !c.IsMap() || !c.Equals(property.New(wantConfig)) {
		t.Errorf("config: got %v (secret %t), want the %d keys of the redacted config", c, c.Secret(), len(keys))
	}
	if got := keys["machine.ca.key"]; got != "(redacted)" {
		t.Errorf(`config["machine.ca.key"] = %q, want (redacted)`, got)
	}
	if got := keys["machine.type"]; got != "controlplane" {
		t.Errorf(`config["machine.type"] = %q, want controlplane`, got)
	}
	if !got.Get("clientConfiguration").Secret() {
		t.Errorf("clientConfiguration is not secret: %v", got.Get("clientConfiguration"))
	}
}

func TestCheckKeepsUnknownInputsUnknown(t *testing.T) {
	l := simtest.New(t)
	unknownSecret := property.New(property.Computed).WithSecret(true)
	for _, tc := range []struct {
		name    string
		key     string
		value   property.Value
		unknown []string // top-level inputs that must stay unknown
	}{
		{"machine configuration unknown", "machineConfiguration", property.New(property.Computed), []string{"machineConfiguration", "config", "configHash"}},
		{"machine configuration unknown and secret", "machineConfiguration", unknownSecret, []string{"machineConfiguration", "config", "configHash"}},
		{"client configuration unknown and secret", "clientConfiguration", unknownSecret, []string{"clientConfiguration"}},
		{"vip unknown", "vip", property.New(property.Computed), []string{"vip"}},
		{"client key unknown", "clientConfiguration", property.New(map[string]property.Value{
			"caCertificate":     property.New(property.Computed),
			"clientCertificate": property.New(property.Computed),
			"clientKey":         unknownSecret,
		}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
			inputs := declared(l, "127.0.10.2", config, "").Set(tc.key, tc.value)
			resp := check(t, server(t), "cp-1", inputs)
			if len(resp.Failures) != 0 {
				t.Fatalf("failures: %v", resp.Failures)
			}
			for _, key := range tc.unknown {
				if !resp.Inputs.Get(key).IsComputed() {
					t.Errorf("%s is known, want unknown", key)
				}
			}
			if cc := resp.Inputs.Get("clientConfiguration"); !cc.Secret() {
				t.Errorf("clientConfiguration is not secret: %v", cc)
			} else if tc.key == "clientConfiguration" && cc.IsMap() && !cc.AsMap().Get("clientKey").IsComputed() {
				t.Errorf("clientKey is known, want unknown")
			}
			if !resp.Inputs.Get("machineConfiguration").Secret() {
				t.Errorf("machineConfiguration is not secret")
			}
		})
	}
}

func TestCheckFailures(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	for _, tc := range []struct {
		name     string
		inputs   property.Map
		property string
		reason   string
	}{
		{"a config machinery cannot decode", declared(l, "127.0.10.3", []byte("machine: [secret-looking-text"), ""), "machineConfiguration", "decode with Talos machinery"},
		{"a timeout that is no duration", declared(l, "127.0.10.3", config, "ten minutes"), "timeout", `"ten minutes" is not a positive Go duration`},
		{"a vip that is no address", declared(l, "127.0.10.3", config, "").Set("vip", property.New("10.20.0.300")), "vip", `"10.20.0.300" is not an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := check(t, server(t), "cp-1", tc.inputs)
			if len(resp.Failures) != 1 || resp.Failures[0].Property != tc.property || !strings.Contains(resp.Failures[0].Reason, tc.reason) {
				t.Fatalf("failures: %+v", resp.Failures)
			}
			if strings.Contains(resp.Failures[0].Reason, "secret-looking-text") {
				t.Fatalf("the reason quotes the (secret) config: %s", resp.Failures[0].Reason)
			}
		})
	}
}

// lifecycle is a node resource created against a simulated node, as an up makes it.
type lifecycle struct {
	s       integration.Server
	name    string
	program property.Map // the program's checked inputs
	id      string
	state   property.Map
}

func create(t *testing.T, l *simtest.Cluster, address string, config []byte, timeout string) *lifecycle {
	t.Helper()
	return createFrom(t, "cp-1", declared(l, address, config, timeout))
}

// createFrom is create with the program's inputs given.
func createFrom(t *testing.T, name string, inputs property.Map) *lifecycle {
	t.Helper()
	s := server(t)
	resp := check(t, s, name, inputs)
	if len(resp.Failures) != 0 {
		t.Fatalf("check: %v", resp.Failures)
	}
	created, err := s.Create(p.CreateRequest{Urn: urn(name), Properties: resp.Inputs})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return &lifecycle{s: s, name: name, program: resp.Inputs, id: created.ID, state: created.Properties}
}

// refresh reads the node, as pulumi refresh or preview --refresh does, and keeps the result.
func (lc *lifecycle) refresh(t *testing.T) (p.ReadResponse, error) {
	t.Helper()
	resp, err := lc.s.Read(p.ReadRequest{ID: lc.id, Urn: urn(lc.name), Properties: lc.state, Inputs: lc.program})
	if err == nil {
		lc.state = resp.Properties
	}
	return resp, err
}

// diff is the preview's diff of the refreshed state against the program.
func (lc *lifecycle) diff(t *testing.T) p.DiffResponse {
	t.Helper()
	resp, err := lc.s.Diff(p.DiffRequest{ID: lc.id, Urn: urn(lc.name), State: lc.state, Inputs: lc.program})
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	return resp
}

func TestCreateRecordsTheNodeAndRefreshShowsDriftByField(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	redacted, err := redact.FromYAML(config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		address string
		change  *simnode.Change
		// live is what a refresh must store in the declared fields and outputs.
		live map[string]string
		// drifted are the fields the diff names.
		drifted []string
	}{
		{name: "as declared", address: "127.0.10.11"},
		{
			name: "talos version changed", address: "127.0.10.12",
			change:  &simnode.Change{TalosVersion: "v1.10.7"},
			live:    map[string]string{"talosVersion": "v1.10.7", "runningTalosVersion": "v1.10.7"},
			drifted: []string{"talosVersion"},
		},
		{
			name: "schematic changed", address: "127.0.10.13",
			change:  &simnode.Change{Schematic: simtest.OtherSchematic},
			live:    map[string]string{"schematicId": simtest.OtherSchematic, "bootedSchematicId": simtest.OtherSchematic},
			drifted: []string{"schematicId"},
		},
		{
			name: "config changed", address: "127.0.10.14",
			change: &simnode.Change{ConfigPatch: "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n"},
			live: map[string]string{"kubernetesVersion": "1.34.2", "appliedKubernetesVersion": "1.34.2",
				"installerImage": simtest.Installer},
			drifted: []string{"config", "configHash", "kubernetesVersion"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := l.Configured(t, tc.address, config)
			lc := create(t, l, tc.address, config, "20s")
			if lc.id != "cp-1" {
				t.Errorf("id = %q", lc.id)
			}
			for key, want := range map[string]any{
				"runningTalosVersion": simtest.TalosVersion, "bootedSchematicId": simtest.Schematic,
				"appliedInstallerImage": simtest.Installer, "appliedKubernetesVersion": simtest.KubernetesVersion,
				"appliedConfigHash": lc.program.Get("configHash").AsString(), "appliedConfig": redacted.Redacted,
				"stage": "running", "ready": true,
			} {
				if got := lc.state.Get(key); got.Secret() || got.IsComputed() || (got.IsString() && got.AsString() != want) || (got.IsBool() && got.AsBool() != want) {
					t.Errorf("after create %s = %v, want %v", key, got, want)
				}
			}

			if tc.change != nil {
				if err := sim.Set(context.Background(), *tc.change); err != nil {
					t.Fatal(err)
				}
			}
			read, err := lc.refresh(t)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			for key, want := range tc.live {
				maps := map[string]property.Map{"state": read.Properties}
				if !strings.HasPrefix(key, "running") && !strings.HasPrefix(key, "booted") && !strings.HasPrefix(key, "applied") {
					// A declared field: the live value goes into the inputs too.
					maps["inputs"] = read.Inputs
				}
				for what, m := range maps {
					if got := m.Get(key); !got.IsString() || got.AsString() != want {
						t.Errorf("refreshed %s %s = %v, want %q", what, key, got, want)
					}
				}
			}
			for _, m := range []property.Map{read.Properties, read.Inputs} {
				for _, key := range []string{"clientConfiguration", "machineConfiguration"} {
					if !m.Get(key).Secret() {
						t.Errorf("refresh made %s plain", key)
					}
				}
			}

			d := lc.diff(t)
			for k, v := range d.DetailedDiff {
				if v.Kind != p.Update && !strings.HasPrefix(k, "config[") {
					t.Errorf("%s: %s, want an update (never a replace)", k, v.Kind)
				}
			}
			fields := diffFields(d)
			if d.HasChanges != (len(tc.drifted) > 0) || !sameSet(fields, tc.drifted) {
				t.Errorf("diff: changes %t, fields %v; want %v", d.HasChanges, fields, tc.drifted)
			}
		})
	}
}

func TestRefreshOfAStoppedNodeFailsNamingItWithinTheTimeout(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	n := l.Configured(t, "127.0.10.21", config)
	lc := create(t, l, "127.0.10.21", config, "2s")
	n.Stop()
	start := time.Now()
	_, err := lc.refresh(t)
	if err == nil || !strings.Contains(err.Error(), "refresh cp-1 (127.0.10.21): not answering over mutual TLS within 2s: version: Unavailable") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 6*time.Second {
		t.Fatalf("failed after %s, want about 2s", time.Since(start))
	}
}

func TestCreateWaitsForANodeThatIsStillInstalling(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	n := l.Node(t, "127.0.10.31", simtest.TalosVersion, simtest.Schematic)
	go func() {
		// Installing: the node answers only in maintenance mode, which mutual TLS refuses.
		time.Sleep(1500 * time.Millisecond)
		if err := simtest.Install(n, config); err != nil {
			t.Error(err)
		}
	}()
	lc := create(t, l, "127.0.10.31", config, "20s")
	if got := lc.state.Get("stage"); got.AsString() != "running" {
		t.Fatalf("stage = %v", got)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestVIPIsCheckedAgainstTheNodesLinks(t *testing.T) {
	l := simtest.New(t)
	const vip = "10.20.0.10"
	interfaces := func(entry string) string {
		return "machine:\n  network:\n    interfaces:\n" + entry
	}
	for _, tc := range []struct {
		name    string
		address string
		links   []string // nil: the simulator's default, enp1s0
		worker  bool
		patch   string
		// declared is the program's vip input, "" for none.
		declared string
		// live is what a refresh stores in vip; vipLink the link it resolved to.
		live    string
		vipLink string
	}{
		{
			name: "by name on the node's link", address: "127.0.10.41",
			patch:    interfaces("      - interface: enp1s0\n        dhcp: true\n        vip:\n          ip: " + vip + "\n"),
			declared: vip, live: vip, vipLink: "enp1s0",
		},
		{
			name: "by name on a link the node lacks", address: "127.0.10.42",
			patch:    interfaces("      - interface: eth0\n        dhcp: true\n        vip:\n          ip: " + vip + "\n"),
			declared: vip, live: vip + ` (no link matches interface "eth0"; links: enp1s0)`,
		},
		{
			name: "by deviceSelector busPath glob", address: "127.0.10.43", links: []string{"enp1s0", "enp2s0"},
			patch:    interfaces("      - deviceSelector:\n          busPath: \"0000:02:*\"\n        dhcp: true\n        vip:\n          ip: " + vip + "\n"),
			declared: vip, live: vip, vipLink: "enp2s0",
		},
		{
			name: "by deviceSelector driver and physical", address: "127.0.10.44",
			patch:    interfaces("      - deviceSelector:\n          driver: virtio_net\n          physical: true\n        dhcp: true\n        vip:\n          ip: " + vip + "\n"),
			declared: vip, live: vip, vipLink: "enp1s0",
		},
		{
			name: "by a deviceSelector that matches no link", address: "127.0.10.45", links: []string{"enp1s0", "enp2s0"},
			patch:    interfaces("      - deviceSelector:\n          driver: e1000\n          physical: true\n        dhcp: true\n        vip:\n          ip: " + vip + "\n"),
			declared: vip, live: vip + ` (no link matches deviceSelector {driver: "e1000", physical: true}; links: enp1s0, enp2s0)`,
		},
		{
			// Not the first link: ignoring that one would take the node's own address too.
			name: "on a link the config ignores", address: "127.0.10.46", links: []string{"enp1s0", "enp2s0"},
			patch:    interfaces("      - interface: enp2s0\n        ignore: true\n        vip:\n          ip: " + vip + "\n"),
			declared: vip, live: vip + " (link enp2s0 has ignore: true)",
		},
		{name: "a worker without one", address: "127.0.10.47", worker: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []simnode.Option
			if tc.links != nil {
				opts = append(opts, simnode.WithLinks(tc.links...))
			}
			config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, tc.patch)
			name := "cp-1"
			if tc.worker {
				// The worker answers over mutual TLS once a control plane signs its certificate.
				l.Configured(t, "127.0.10.40", config)
				config = l.Worker(t, simtest.KubernetesVersion, simtest.Installer, tc.patch)
				name = "worker-1"
			}
			l.Configured(t, tc.address, config, opts...)
			inputs := declared(l, tc.address, config, "20s")
			if tc.declared != "" {
				inputs = inputs.Set("vip", property.New(tc.declared))
			}
			lc := createFrom(t, name, inputs)
			wantLinks := tc.links
			if wantLinks == nil {
				wantLinks = simnode.DefaultLinks
			}
			// Create stores the declared vip; only a refresh puts the live one there.
			expect(t, "after create", lc.state, map[string]string{"vip": tc.declared, "vipLink": tc.vipLink}, wantLinks)

			read, err := lc.refresh(t)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			expect(t, "refreshed state", read.Properties, map[string]string{"vip": tc.live, "vipLink": tc.vipLink}, wantLinks)
			expect(t, "refreshed inputs", read.Inputs, map[string]string{"vip": tc.live}, nil)

			d := lc.diff(t)
			var fields []string
			for k := range d.DetailedDiff {
				fields = append(fields, k)
			}
			var drifted []string
			if tc.live != tc.declared {
				drifted = []string{"vip"}
			}
			if d.HasChanges != (len(drifted) > 0) || !sameSet(fields, drifted) {
				t.Errorf("diff: changes %t, fields %v; want %v", d.HasChanges, fields, drifted)
			}
		})
	}
}

// expect checks string fields of a state or inputs, an absent field counting as "", and the
// links output unless links is nil.
func expect(t *testing.T, what string, m property.Map, fields map[string]string, links []string) {
	t.Helper()
	for key, want := range fields {
		got, ok := m.GetOk(key)
		if !ok && want == "" {
			continue
		}
		if !got.IsString() || got.AsString() != want || got.Secret() {
			t.Errorf("%s: %s = %#v (secret %t), want %q (plain)", what, key, got, got.Secret(), want)
		}
	}
	if links == nil {
		return
	}
	var got []string
	if v := m.Get("links"); v.IsArray() {
		for _, link := range v.AsArray().All {
			got = append(got, link.AsString())
		}
	}
	if !slices.Equal(got, links) {
		t.Errorf("%s: links = %v, want %v", what, got, links)
	}
}

func TestAStateWrittenBeforeTheVIPCheckStillPreviewsAndUpdates(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  network:\n    interfaces:\n      - interface: enp1s0\n        dhcp: true\n        vip:\n          ip: 10.20.0.10\n")
	l.Configured(t, "127.0.10.48", config)
	lc := create(t, l, "127.0.10.48", config, "20s")
	// What an earlier provider stored: no vip, vipLink or links. The program now declares a vip.
	old := lc.state.Delete("vip", "vipLink", "links")
	program := check(t, lc.s, lc.name, declared(l, "127.0.10.48", config, "20s").Set("vip", property.New("10.20.0.10"))).Inputs
	for _, dryRun := range []bool{true, false} {
		resp, err := lc.s.Update(p.UpdateRequest{ID: lc.id, Urn: urn(lc.name), State: old, Inputs: program, DryRun: dryRun})
		if err != nil {
			t.Fatalf("update (preview %t): %v", dryRun, err)
		}
		if got := resp.Properties.Get("vip"); !got.IsString() || got.AsString() != "10.20.0.10" {
			t.Errorf("update (preview %t): vip = %#v", dryRun, got)
		}
		if got := resp.Properties.Get("vipLink"); !dryRun && (!got.IsString() || got.AsString() != "enp1s0") {
			t.Errorf("update: vipLink = %#v, want enp1s0", got)
		}
	}
}

// TestAStateWrittenWhenConfigWasTextStillPreviewsAndRefreshes: a provider before config held key
// paths stored the redacted config as one text. That state reads as its keys: a preview of the
// same config shows no change, and a refresh stores the keys.
func TestAStateWrittenWhenConfigWasTextStillPreviewsAndRefreshes(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	l.Configured(t, "127.0.10.49", config)
	lc := create(t, l, "127.0.10.49", config, "20s")
	redacted, err := redact.FromYAML(config)
	if err != nil {
		t.Fatal(err)
	}
	lc.state = lc.state.Set("config", property.New(redacted.Redacted))
	if d := lc.diff(t); d.HasChanges {
		t.Errorf("the same config previews as a change: %v", d.DetailedDiff)
	}
	read, err := lc.refresh(t)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if got := read.Properties.Get("config"); !got.IsMap() || got.AsMap().Get("machine.type").AsString() != "controlplane" {
		t.Errorf("refreshed config = %v", got)
	}
}
