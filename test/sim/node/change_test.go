package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/client"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

const otherSchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

// configured is a started control plane with the lab cluster's config applied, and its client.
func configured(t *testing.T) (*Node, *client.Client) {
	t.Helper()
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	return n, mutual(t, n, cl.talosconfig)
}

func schematicOf(t *testing.T, c *client.Client, n *Node) []string {
	t.Helper()
	list, err := safe.StateListAll[*runtime.ExtensionStatus](ctx(t, n), c.COSI)
	if err != nil {
		t.Fatalf("list extensions: %v", err)
	}
	var ids []string
	for ext := range list.All() {
		if ext.TypedSpec().Metadata.Name == "schematic" {
			ids = append(ids, ext.TypedSpec().Metadata.Version)
		}
	}
	return ids
}

func TestMachineStatusIsMaintenanceUntilTheFirstConfigThenRunningAndReady(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	// A maintenance caller is a reader, and MachineStatus is not sensitive.
	before, err := safe.StateGetByID[*runtime.MachineStatus](ctx(t, n), insecure(t, n).COSI, runtime.MachineStatusID)
	if err != nil {
		t.Fatalf("get MachineStatus in maintenance: %v", err)
	}
	if s := before.TypedSpec(); s.Stage != runtime.MachineStageMaintenance || !s.Status.Ready || len(s.Status.UnmetConditions) != 0 {
		t.Fatalf("maintenance status: %+v", s)
	}
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	after, err := safe.StateGetByID[*runtime.MachineStatus](ctx(t, n), mutual(t, n, cl.talosconfig).COSI, runtime.MachineStatusID)
	if err != nil {
		t.Fatalf("get MachineStatus once configured: %v", err)
	}
	if s := after.TypedSpec(); s.Stage != runtime.MachineStageRunning || !s.Status.Ready || len(s.Status.UnmetConditions) != 0 {
		t.Fatalf("configured status: %+v", s)
	}
}

func TestSetChangesWhatTheNodeRuns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change Change
		check  func(t *testing.T, n *Node, c *client.Client)
	}{
		{"talos version", Change{TalosVersion: "v1.10.7"}, func(t *testing.T, n *Node, c *client.Client) {
			resp, err := c.Version(ctx(t, n))
			if err != nil {
				t.Fatal(err)
			}
			if tag := resp.GetMessages()[0].GetVersion().GetTag(); tag != "v1.10.7" || n.State().TalosVersion != "v1.10.7" {
				t.Fatalf("Version tag %s, state %s", tag, n.State().TalosVersion)
			}
			if got := schematicOf(t, c, n); len(got) != 1 || got[0] != bootedSchematic {
				t.Fatalf("schematic changed with the version: %v", got)
			}
		}},
		{"schematic", Change{Schematic: otherSchematic}, func(t *testing.T, n *Node, c *client.Client) {
			if got := schematicOf(t, c, n); len(got) != 1 || got[0] != otherSchematic {
				t.Fatalf("schematic extensions: %v", got)
			}
		}},
		{"config patch", Change{ConfigPatch: "machine:\n  install:\n    image: ghcr.io/siderolabs/installer:v1.10.7\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.33.0\n"}, func(t *testing.T, n *Node, c *client.Client) {
			mc, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), c.COSI, configres.ActiveID)
			if err != nil {
				t.Fatal(err)
			}
			if img := mc.Config().K8sKubeletConfig().Image(); img != "ghcr.io/siderolabs/kubelet:v1.33.0" {
				t.Fatalf("kubelet image in MachineConfig: %s", img)
			}
			s := n.State()
			if s.InstallImage != "ghcr.io/siderolabs/installer:v1.10.7" || !strings.Contains(s.Config, "kubelet:v1.33.0") {
				t.Fatalf("state: installImage %s, config has the patch: %t", s.InstallImage, strings.Contains(s.Config, "kubelet:v1.33.0"))
			}
			if s.Applies != 1 || len(s.ApplyModes) != 1 {
				t.Fatalf("a hand change was counted as an apply: %d %v", s.Applies, s.ApplyModes)
			}
			// The machine CA is unchanged: the same client still gets in.
			if _, err := c.Version(ctx(t, n)); err != nil {
				t.Fatalf("after the patch: %v", err)
			}
		}},
		{"all at once", Change{TalosVersion: "v1.11.6", Schematic: otherSchematic, ConfigPatch: "machine:\n  install:\n    image: other:v1.11.6\n"}, func(t *testing.T, n *Node, c *client.Client) {
			if s := n.State(); s.TalosVersion != "v1.11.6" || s.InstallImage != "other:v1.11.6" {
				t.Fatalf("state: %s %s", s.TalosVersion, s.InstallImage)
			}
			if got := schematicOf(t, c, n); len(got) != 1 || got[0] != otherSchematic {
				t.Fatalf("schematic extensions: %v", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, c := configured(t)
			if err := n.Set(context.Background(), tc.change); err != nil {
				t.Fatalf("set: %v", err)
			}
			tc.check(t, n, c)
		})
	}
}

func TestSetRefusesBadChangesAndChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maintenance bool
		change      Change
		message     string
	}{
		{"nothing", false, Change{}, "nothing to set"},
		{"version without v", false, Change{TalosVersion: "1.10.7"}, `talosVersion "1.10.7" is not a Talos release tag`},
		{"short schematic", false, Change{Schematic: "abc"}, `schematic "abc" is not a schematic id`},
		{"patch that is not YAML", false, Change{TalosVersion: "v1.10.7", ConfigPatch: "machine: [unclosed"}, "configPatch: "},
		{"patch that breaks the config", false, Change{TalosVersion: "v1.10.7", ConfigPatch: "machine:\n  ca:\n    $patch: delete\n"}, "configPatch: configuration validation failed: machine.ca is missing"},
		{"patch in maintenance", true, Change{ConfigPatch: "machine:\n  install:\n    image: x\n"}, "has no config to patch (maintenance mode)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n *Node
			if tc.maintenance {
				n = startNode(t)
			} else {
				n, _ = configured(t)
			}
			before := n.State()
			err := n.Set(context.Background(), tc.change)
			if !errors.Is(err, ErrBadChange) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v, want ErrBadChange containing %q", err, tc.message)
			}
			if after := n.State(); after.TalosVersion != before.TalosVersion || after.Config != before.Config {
				t.Fatalf("a refused change changed the node: %s -> %s", before.TalosVersion, after.TalosVersion)
			}
		})
	}
}

func TestAStoppedNodeTakesAChangeAndShowsItWhenStarted(t *testing.T) {
	n, c := configured(t)
	n.Stop()
	if err := n.Set(context.Background(), Change{TalosVersion: "v1.10.7"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Version(ctx(t, n))
	if err != nil {
		t.Fatal(err)
	}
	if tag := resp.GetMessages()[0].GetVersion().GetTag(); tag != "v1.10.7" {
		t.Fatalf("tag = %s", tag)
	}
}
