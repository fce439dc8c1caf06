package node

import (
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Talos 1.14's ApplyConfiguration (v1.14.1 internal/app/machined/internal/server/v1alpha1/
// v1alpha1_server.go): AUTO is NO_REBOOT whatever the change, NO_REBOOT takes what 1.11 refused
// (the change waits for the next boot, and nothing says so), REBOOT is Unimplemented on a
// configured node. The 1.11 rules are TestAutoAppliesInPlaceWhatTalosCanAndRebootsForTheRest.
func TestOn114AutoNeverRebootsAndRebootIsRefused(t *testing.T) {
	n, cl := startNodeRunning(t, "v1.14.1", WithRebootTime(testRebootTime)), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	c := mutual(t, n, cl.talosconfig)
	send := func(mode machine.ApplyConfigurationRequest_Mode, dryRun bool, patch string) (*machine.ApplyConfigurationResponse, error) {
		return c.ApplyConfiguration(ctx(t, n), &machine.ApplyConfigurationRequest{Data: patched(t, []byte(n.State().Config), patch), Mode: mode, DryRun: dryRun})
	}
	boot := n.State().BootID
	files := "machine:\n  files:\n    - content: hi\n      path: /var/etc/hi\n      permissions: 0o644\n      op: create\n"
	resp, err := send(machine.ApplyConfigurationRequest_AUTO, true, files)
	if err != nil || resp.GetMessages()[0].GetMode() != machine.ApplyConfigurationRequest_NO_REBOOT ||
		!strings.HasPrefix(resp.GetMessages()[0].GetModeDetails(), "Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).") {
		t.Fatalf("dry run auto with files: %v %v", resp, err)
	}
	resp, err = send(machine.ApplyConfigurationRequest_AUTO, false, files)
	if err != nil || resp.GetMessages()[0].GetMode() != machine.ApplyConfigurationRequest_NO_REBOOT {
		t.Fatalf("auto with files: %v %v", resp, err)
	}
	if st := n.State(); st.BootID != boot || !strings.Contains(st.Config, "/var/etc/hi") || st.Staged {
		t.Fatalf("auto rebooted or did not apply: boot %s -> %s, staged %t", boot, st.BootID, st.Staged)
	}
	env := "machine:\n  env:\n    HTTP_PROXY: http://proxy.invalid:3128\n"
	if _, err := send(machine.ApplyConfigurationRequest_NO_REBOOT, false, env); err != nil {
		t.Fatalf("no_reboot with env: %v", err)
	}
	if st := n.State(); st.BootID != boot || !strings.Contains(st.Config, "HTTP_PROXY") {
		t.Fatal("no_reboot with env rebooted or did not apply")
	}
	_, err = send(machine.ApplyConfigurationRequest_REBOOT, false, "machine:\n  env:\n    NO_PROXY: example.com\n")
	if status.Code(err) != codes.Unimplemented || status.Convert(err).Message() != "the REBOOT mode is not supported, please use AUTO or NO_REBOOT modes instead" {
		t.Fatalf("reboot: %v", err)
	}
	if strings.Contains(n.State().Config, "NO_PROXY") {
		t.Fatal("a refused apply changed the config")
	}
}
