package provider

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/sim/simtest"
)

// planNodes is a stack of two control planes and two workers, declared worker first as a stack
// file may list them, each with the given patch.
func planNodes(t *testing.T, l *simtest.Cluster, version, schematic, patch string) []RolloutNode {
	t.Helper()
	var nodes []RolloutNode
	for _, n := range []struct{ name, role string }{{"worker-1", "worker"}, {"cp-1", "controlplane"}, {"cp-2", "controlplane"}, {"worker-2", "worker"}} {
		config := l.Worker
		if n.role == "controlplane" {
			config = l.ControlPlane
		}
		nodes = append(nodes, RolloutNode{
			Name: n.name, Address: "127.0.0.1", Role: n.role, TalosVersion: version, SchematicID: schematic,
			MachineConfiguration: string(config(t, simtest.KubernetesVersion, simtest.Installer, patch)),
		})
	}
	return nodes
}

// TestThePlanNamesEachNodeItChangesTheKeysAndWhetherItReboots: a one-line patch on every node is
// one line per node, control planes first, naming the key's path and never a value, and how Talos
// answers the dry run.
func TestThePlanNamesEachNodeItChangesTheKeysAndWhetherItReboots(t *testing.T) {
	l := simtest.New(t)
	recorded := planNodes(t, l, simtest.TalosVersion, simtest.Schematic, "")
	declared := planNodes(t, l, simtest.TalosVersion, simtest.Schematic, "machine:\n  kubelet:\n    extraArgs:\n      max-pods: \"250\"\n")
	var asked []string
	ask := func(_ context.Context, n RolloutNode) (machine.ApplyConfigurationRequest_Mode, error) {
		asked = append(asked, n.Name)
		if n.Name == "worker-2" {
			return 0, errors.New("cannot connect")
		}
		if n.Role == "controlplane" {
			return machine.ApplyConfigurationRequest_NO_REBOOT, nil
		}
		return machine.ApplyConfigurationRequest_REBOOT, nil
	}
	got := planLines(context.Background(), recorded, declared, machine.ApplyConfigurationRequest_AUTO, ask)
	want := []string{
		`cp-1: config + machine.kubelet.extraArgs["max-pods"]; in place (Talos' dry run: no reboot)`,
		`cp-2: config + machine.kubelet.extraArgs["max-pods"]; in place (Talos' dry run: no reboot)`,
		`worker-1: config + machine.kubelet.extraArgs["max-pods"]; reboots (Talos' dry run: it cannot apply this in place)`,
		`worker-2: config + machine.kubelet.extraArgs["max-pods"]; in place or a reboot, as Talos answers at the update (its dry run failed: cannot connect)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(asked, []string{"cp-1", "cp-2", "worker-1", "worker-2"}) {
		t.Errorf("asked %v", asked)
	}
	for _, line := range got {
		if strings.Contains(line, "250") {
			t.Errorf("a value is quoted: %s", line)
		}
	}

	// Without os:admin nothing is asked, and the plan says so.
	if got := planLines(context.Background(), recorded, declared, machine.ApplyConfigurationRequest_AUTO, nil); !strings.HasSuffix(got[0], "in place or a reboot, as Talos answers at the update (a dry run needs os:admin)") {
		t.Errorf("without a dry run: %q", got[0])
	}
	// A mode other than auto is the answer: nothing is asked.
	asked = nil
	for mode, effect := range map[machine.ApplyConfigurationRequest_Mode]string{
		machine.ApplyConfigurationRequest_STAGED:    "staged, active after its next reboot",
		machine.ApplyConfigurationRequest_NO_REBOOT: "in place (apply mode no_reboot)",
		machine.ApplyConfigurationRequest_REBOOT:    "reboots (apply mode reboot)",
	} {
		if got := planLines(context.Background(), recorded, declared, mode, ask); !strings.HasSuffix(got[0], "; "+effect) {
			t.Errorf("%s: %q", mode, got[0])
		}
	}
	if len(asked) != 0 {
		t.Errorf("asked %v in a mode other than auto", asked)
	}
	// The same config again, even written anew, is no change.
	if got := planLines(context.Background(), recorded, planNodes(t, l, simtest.TalosVersion, simtest.Schematic, ""), machine.ApplyConfigurationRequest_AUTO, ask); len(got) != 0 {
		t.Errorf("no change: %q", got)
	}
}

func TestThePlanOfAnUpgradeANewNodeAndARemovedOne(t *testing.T) {
	l := simtest.New(t)
	recorded := planNodes(t, l, simtest.TalosVersion, simtest.Schematic, "")
	declared := planNodes(t, l, "v1.11.6", simtest.Schematic, "")
	declared[0].SchematicID = simtest.OtherSchematic
	declared[2].MachineConfiguration = string(l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  sysctls:\n    net.core.somaxconn: \"65535\"\n"))
	declared = append(declared[:3], RolloutNode{Name: "worker-3", Role: "worker", TalosVersion: "v1.11.6", SchematicID: simtest.Schematic})
	got := planLines(context.Background(), recorded, declared, machine.ApplyConfigurationRequest_AUTO, nil)
	want := []string{
		"worker-2: no longer declared, leaves the cluster: cordon, drain (PodDisruptionBudgets honoured, bounded by drainTimeout), graceful reset wiping STATE and EPHEMERAL, Node deleted; " +
			"if it does not answer: cordon, pods evicted, reset skipped, Node deleted",
		"cp-1: Talos v1.11.5 -> v1.11.6; reboots (upgrade)",
		`cp-2: Talos v1.11.5 -> v1.11.6, config + machine.sysctls["net.core.somaxconn"]; reboots once (upgrade): the config is staged for it, or applied after it when the running release refuses it`,
		"worker-1: Talos v1.11.5 -> v1.11.6, schematic 2d61dd07b200 -> 376567988ad3; reboots (upgrade)",
		"worker-3: new node: its own config apply installs it",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTheConfigStepNamesKeysNeverValues(t *testing.T) {
	l := simtest.New(t)
	before := string(l.Worker(t, simtest.KubernetesVersion, simtest.Installer, ""))
	many := string(l.Worker(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  sysctls:\n    a.b: \"1\"\n    c.d: \"2\"\n    e.f: \"3\"\n    g.h: \"4\"\n    i.j: \"5\"\n    k.l: \"6\"\n    m.n: \"7\"\n"))
	if got, want := configStep(before, many), `config + machine.sysctls["a.b"], + machine.sysctls["c.d"], + machine.sysctls["e.f"], + machine.sysctls["g.h"], + machine.sysctls["i.j"], and 2 more`; got != want {
		t.Errorf("many keys: %q, want %q", got, want)
	}
	// A new secret value: the key is the same (redacted), the config is not.
	token := strings.Replace(before, "token: ", "token: x", 1)
	if got := configStep(before, token); got != "config: a secret value" {
		t.Errorf("a secret: %q", got)
	}
	if got := configStep(before, ""); got != "config (not known until the update)" {
		t.Errorf("unknown: %q", got)
	}
}

// On Talos 1.14+ nodes, which apply every change without a reboot, the plan says what the stack's
// mode does there: no_reboot takes the change (one needing a boot waits), reboot and an auto
// change that needs a boot are applied in place and then rebooted by the rollout.
func TestThePlanOf114NodesSaysTheRolloutReboots(t *testing.T) {
	l := simtest.New(t)
	recorded := planNodes(t, l, "v1.14.1", simtest.Schematic, "")
	declared := planNodes(t, l, "v1.14.1", simtest.Schematic, "machine:\n  env:\n    HTTP_PROXY: http://proxy.invalid:3128\n")
	ask := func(context.Context, RolloutNode) (machine.ApplyConfigurationRequest_Mode, error) {
		return machine.ApplyConfigurationRequest_REBOOT, nil
	}
	for mode, effect := range map[machine.ApplyConfigurationRequest_Mode]string{
		machine.ApplyConfigurationRequest_AUTO:      "reboots (Talos 1.14+ applies it without one, but the change goes past what takes effect without a boot: the rollout drains and reboots the node)",
		machine.ApplyConfigurationRequest_NO_REBOOT: "in place (apply mode no_reboot: Talos 1.14+ takes every change; one that needs a boot waits for the next)",
		machine.ApplyConfigurationRequest_REBOOT:    "reboots (apply mode reboot: Talos 1.14+ applies it without one, then the rollout drains and reboots the node)",
	} {
		if got := planLines(context.Background(), recorded, declared, mode, ask); !strings.HasSuffix(got[0], "; "+effect) {
			t.Errorf("%s: %q", mode, got[0])
		}
	}
}

// TestThePlanOfMachinesThatComeAndGo: new control planes are awaited first, then the machines
// that leave go (replaced, workers, control planes), each with what happens to it in order.
func TestThePlanOfMachinesThatComeAndGo(t *testing.T) {
	l := simtest.New(t)
	recorded := planNodes(t, l, simtest.TalosVersion, simtest.Schematic, "")
	for i, address := range []string{"10.0.0.4", "10.0.0.1", "10.0.0.2", "10.0.0.5"} {
		recorded[i].Address = address
	}
	recorded = append(recorded, RolloutNode{Name: "cp-3", Address: "10.0.0.3", Role: "controlplane", TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic,
		MachineConfiguration: recorded[1].MachineConfiguration})
	declared := slices.Clone(recorded[:4])
	declared[2].Address = "10.0.0.12" // cp-2 on a new machine
	declared = append(declared, RolloutNode{Name: "cp-4", Address: "10.0.0.14", Role: "controlplane", TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic,
		MachineConfiguration: recorded[1].MachineConfiguration})
	got := planLines(context.Background(), recorded, declared, machine.ApplyConfigurationRequest_AUTO, nil)
	want := []string{
		"cp-2: new machine at 10.0.0.12, replacing the one at 10.0.0.2: its own config apply installs it; it joins etcd as a learner and counts once etcd promotes it, awaited before any other change",
		"cp-4: new control plane: its own config apply installs it; it joins etcd as a learner and counts once etcd promotes it, awaited before any other change",
		"cp-2: the machine at 10.0.0.2: replaced at another address: leaves etcd, reset wiping STATE and EPHEMERAL; its Node name stays with the new machine; " +
			"if it does not answer: replaced at another address: its etcd member removed by id from a control plane that stays; its Node name stays with the new machine",
		"cp-3: no longer declared, leaves the cluster: health and etcd gates, cordon, drain (PodDisruptionBudgets honoured, bounded by drainTimeout), verified etcd snapshot, " +
			"forfeit etcd leadership if it leads, leave etcd, graceful reset wiping STATE and EPHEMERAL, Node deleted; " +
			"if it does not answer: verified etcd snapshot, its member removed by id from a control plane that stays, cordon, pods evicted, reset skipped, Node deleted",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
