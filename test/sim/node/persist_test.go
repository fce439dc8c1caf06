package node

import (
	"context"
	"strings"
	"testing"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
)

// machineConfigs is what `talosctl get machineconfig` shows: the mark (sysctl vm.max_map_count,
// which applies in place) of each MachineConfig id the node serves ("" for a config without it),
// absent ids left out.
func machineConfigs(t *testing.T, c *client.Client, n *Node) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range []string{configres.ActiveID, configres.PersistentID} {
		mc, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), c.COSI, id)
		if state.IsNotFoundError(err) {
			continue
		}
		if err != nil {
			t.Fatalf("get MachineConfig %s: %v", id, err)
		}
		out[id] = mc.Config().Machine().Sysctls()["vm.max_map_count"]
	}
	list, err := safe.StateListAll[*configres.MachineConfig](ctx(t, n), c.COSI)
	if err != nil {
		t.Fatalf("list MachineConfigs: %v", err)
	}
	if list.Len() != len(out) {
		t.Fatalf("list has %d MachineConfigs, get found %v", list.Len(), out)
	}
	return out
}

func sameConfigs(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// Talos keeps the active config (MachineConfig v1alpha1) and the one on the STATE partition
// (MachineConfig persistent) apart: a staged apply writes only the persistent one, which is
// ahead of the active one until the next boot; a boot loads the config from STATE alone and
// serves no persistent one.
func TestAStagedConfigIsPersistedAndActiveOnlyAfterTheNextBoot(t *testing.T) {
	s := newSim(t, 23, 1, 0)
	n := s.nodes[0]
	c := s.client(t, n)
	base := n.State().Config
	withMark := func(mark string) []byte {
		return patched(t, []byte(base), "machine:\n  sysctls:\n    vm.max_map_count: \""+mark+"\"\n")
	}
	step := func(what string, want map[string]string) {
		t.Helper()
		if got := machineConfigs(t, c, n); !sameConfigs(got, want) {
			t.Fatalf("%s: MachineConfigs (id: mark) %v, want %v", what, got, want)
		}
	}
	// Installed from maintenance mode: the config came from STATE at the install's reboot.
	step("installed", map[string]string{"v1alpha1": ""})

	if err := applyMode(t, c, n, withMark("1001"), machine.ApplyConfigurationRequest_STAGED); err != nil {
		t.Fatal(err)
	}
	step("staged", map[string]string{"v1alpha1": "", "persistent": "1001"})
	if st := n.State(); strings.Contains(st.Config, "max_map_count") || !st.Staged {
		t.Fatalf("staged config active before a reboot: staged %t", st.Staged)
	}

	boot := n.State().BootID
	if _, err := c.RebootWithResponse(ctx(t, n)); err != nil {
		t.Fatal(err)
	}
	waitBoot(t, n, boot)
	c = s.client(t, n)
	step("rebooted", map[string]string{"v1alpha1": "1001"})

	// NO_REBOOT (and AUTO in place) sets both; TRY only the active one.
	if err := applyMode(t, c, n, withMark("1002"), machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	step("no-reboot", map[string]string{"v1alpha1": "1002", "persistent": "1002"})
	if err := applyMode(t, c, n, withMark("1003"), machine.ApplyConfigurationRequest_TRY); err != nil {
		t.Fatal(err)
	}
	step("try", map[string]string{"v1alpha1": "1003", "persistent": "1002"})

	// A hand edit (talosctl patch machineconfig) is an apply: both, and a staged one is gone.
	if err := applyMode(t, c, n, withMark("1004"), machine.ApplyConfigurationRequest_STAGED); err != nil {
		t.Fatal(err)
	}
	if err := n.Set(context.Background(), Change{ConfigPatch: "machine:\n  sysctls:\n    vm.max_map_count: \"1005\"\n"}); err != nil {
		t.Fatal(err)
	}
	step("by hand", map[string]string{"v1alpha1": "1005", "persistent": "1005"})
	if n.State().Staged {
		t.Fatal("a hand edit left the staged config waiting")
	}
}
