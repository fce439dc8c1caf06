package provider_test

import (
	"slices"
	"strings"
	"testing"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"talos-cluster/sim/simtest"
)

func applyURN(name string) presource.URN {
	return presource.NewURN("test", "talos-cluster", "", "talosnode:index:ConfigurationApply", name)
}

// applyInputs is what TalosCluster passes for a node's first config.
func applyInputs(l *simtest.Cluster, address string, config []byte, mode string) property.Map {
	return property.NewMap(map[string]property.Value{
		"node": property.New(address),
		"clientConfiguration": property.New(map[string]property.Value{
			"caCertificate":     property.New(l.Credentials.CACertificate),
			"clientCertificate": property.New(l.Credentials.ClientCertificate),
			"clientKey":         property.New(l.Credentials.ClientKey).WithSecret(true),
		}),
		"machineConfiguration": property.New(string(config)).WithSecret(true),
		"applyMode":            property.New(mode),
		"timeout":              property.New("20s"),
	})
}

// createApply checks and creates the resource as an up does, returning the server and the state.
func createApply(t *testing.T, name string, inputs property.Map) (integration.Server, p.CreateResponse, property.Map) {
	t.Helper()
	s := server(t)
	checked, err := s.Check(p.CheckRequest{Urn: applyURN(name), Inputs: inputs})
	if err != nil || len(checked.Failures) != 0 {
		t.Fatalf("check: %v %v", err, checked.Failures)
	}
	created, err := s.Create(p.CreateRequest{Urn: applyURN(name), Properties: checked.Inputs})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return s, created, checked.Inputs
}

// A node in maintenance mode installs the config in the mode maintenance takes: the stack's auto
// or reboot, and auto for no_reboot and staged, which Talos' maintenance service refuses (as the
// project's wrapper of the talos plugin's apply did, talosplugin/installmode).
func TestANodeInMaintenanceInstallsItsConfig(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	for i, tc := range []struct{ stack, sent string }{
		{"auto", "AUTO"}, {"reboot", "REBOOT"}, {"no_reboot", "AUTO"}, {"staged", "AUTO"},
	} {
		t.Run(tc.stack, func(t *testing.T) {
			address := []string{"127.0.10.91", "127.0.10.92", "127.0.10.93", "127.0.10.94"}[i]
			n := l.Node(t, address, simtest.TalosVersion, simtest.Schematic)
			s, created, _ := createApply(t, "lab-cp-1", applyInputs(l, address, config, tc.stack))

			st := n.State()
			if !st.Configured || st.Applies != 1 || !slices.Equal(st.ApplyModes, []string{tc.sent}) || st.Config != string(config) {
				t.Errorf("node: configured %t, %d applies in %v, want the config once in %s", st.Configured, st.Applies, st.ApplyModes, tc.sent)
			}
			if got := created.Properties.Get("adopted"); !got.IsBool() || got.AsBool() {
				t.Errorf("adopted = %v, want false", got)
			}
			if got := created.Properties.Get("installMode"); got.AsString() != tc.sent {
				t.Errorf("installMode = %v, want %s", got, tc.sent)
			}
			for _, key := range []string{"machineConfiguration", "clientConfiguration"} {
				if !created.Properties.Get(key).Secret() {
					t.Errorf("%s is not secret in the state", key)
				}
			}
			// Deleting it leaves the machine alone.
			if err := s.Delete(p.DeleteRequest{ID: created.ID, Urn: applyURN("lab-cp-1"), Properties: created.Properties}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if after := n.State(); after.Applies != 1 || !after.Configured || after.BootID != st.BootID {
				t.Errorf("after delete: configured %t, %d applies, boot %s (was %s): the machine was touched", after.Configured, after.Applies, after.BootID, st.BootID)
			}
		})
	}
}

// A node that already answers over mutual TLS (configured by the talos provider's apply of an
// existing stack, or by hand) is adopted: nothing is applied, it does not reboot, and the record
// says so.
func TestAConfiguredNodeIsAdoptedWithoutAnApply(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	n := l.Configured(t, "127.0.10.95", config)
	before := n.State()
	// Another config than the node runs: adopting must not send it.
	changed := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  sysctls:\n    net.core.somaxconn: \"1024\"\n")

	_, created, _ := createApply(t, "lab-cp-1", applyInputs(l, "127.0.10.95", changed, "reboot"))

	after := n.State()
	if after.Applies != before.Applies || after.BootID != before.BootID || after.Config != string(config) {
		t.Errorf("node: %d applies (was %d), boot %s (was %s), config changed %t: an adopted node was touched",
			after.Applies, before.Applies, after.BootID, before.BootID, after.Config != string(config))
	}
	if got := created.Properties.Get("adopted"); !got.IsBool() || !got.AsBool() {
		t.Errorf("adopted = %v, want true", got)
	}
	if got := created.Properties.Get("installMode"); got.AsString() != "" {
		t.Errorf("installMode = %v, want empty", got)
	}
}

// Only a new address replaces it; a new config, mode, credential or timeout is the Rollout's and
// shows no change, so no up ever applies to a running node from here.
func TestOnlyANewAddressIsAChange(t *testing.T) {
	l := simtest.New(t)
	config := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	l.Node(t, "127.0.10.96", simtest.TalosVersion, simtest.Schematic)
	s, created, program := createApply(t, "lab-cp-1", applyInputs(l, "127.0.10.96", config, "auto"))
	other := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  sysctls:\n    net.core.somaxconn: \"1024\"\n")

	for _, tc := range []struct {
		name    string
		inputs  property.Map
		replace bool
	}{
		{"same", program, false},
		{"config", program.Set("machineConfiguration", property.New(string(other)).WithSecret(true)), false},
		{"unknown config", program.Set("machineConfiguration", property.New(property.Computed).WithSecret(true)), false},
		{"mode", program.Set("applyMode", property.New("staged")), false},
		{"timeout", program.Set("timeout", property.New("1m")), false},
		{"address", program.Set("node", property.New("127.0.10.97")), true},
		{"unknown address", program.Set("node", property.New(property.Computed)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Diff(p.DiffRequest{ID: created.ID, Urn: applyURN("lab-cp-1"), State: created.Properties, Inputs: tc.inputs})
			if err != nil {
				t.Fatal(err)
			}
			if d.HasChanges != tc.replace {
				t.Fatalf("changes %t (%v), want %t", d.HasChanges, d.DetailedDiff, tc.replace)
			}
			if tc.replace && d.DetailedDiff["node"].Kind != p.UpdateReplace {
				t.Errorf("detailed diff %v, want node update&replace", d.DetailedDiff)
			}
		})
	}
}

// A config Talos cannot load fails the check, before any node is asked, without quoting it.
func TestACheckRefusesAConfigThatDoesNotLoadWithoutQuotingIt(t *testing.T) {
	l := simtest.New(t)
	inputs := applyInputs(l, "127.0.10.98", []byte("machine:\n  token: s3cr3t-t0ken\n  nosuchkey: s3cr3t-v4lue\n"), "sometimes")
	resp, err := server(t).Check(p.CheckRequest{Urn: applyURN("lab-cp-1"), Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range resp.Failures {
		got[f.Property] = f.Reason
	}
	if !strings.Contains(got["applyMode"], `"sometimes" is not one of auto, no_reboot, reboot, staged`) {
		t.Errorf("applyMode failure %q", got["applyMode"])
	}
	if r := got["machineConfiguration"]; !strings.HasPrefix(r, "not a machine config Talos can load") || strings.Contains(r, "s3cr3t") {
		t.Errorf("machineConfiguration failure %q: want the reason without the config's values", r)
	}
}
