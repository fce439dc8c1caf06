package node

import (
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kubernetes135 moves a config's kubelet and control-plane images to Kubernetes 1.35.0, which
// Talos 1.12 supports and 1.11 does not.
const kubernetes135 = `machine:
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.35.0
cluster:
  apiServer:
    image: registry.k8s.io/kube-apiserver:v1.35.0
  controllerManager:
    image: registry.k8s.io/kube-controller-manager:v1.35.0
  scheduler:
    image: registry.k8s.io/kube-scheduler:v1.35.0
`

func TestAKubernetesVersionTheRunningReleaseDoesNotSupportIsRefusedInEveryMode(t *testing.T) {
	s := newSim(t, 21, 1, 0)
	n := s.nodes[0]
	c := s.client(t, n)
	data := patched(t, []byte(n.State().Config), kubernetes135)
	for _, mode := range []machine.ApplyConfigurationRequest_Mode{machine.ApplyConfigurationRequest_AUTO, machine.ApplyConfigurationRequest_NO_REBOOT,
		machine.ApplyConfigurationRequest_REBOOT, machine.ApplyConfigurationRequest_STAGED, machine.ApplyConfigurationRequest_TRY} {
		for _, dry := range []bool{false, true} {
			_, err := c.ApplyConfiguration(ctx(t, n), &machine.ApplyConfigurationRequest{Data: data, Mode: mode, DryRun: dry})
			msg := status.Convert(err).Message()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "kubelet image is not valid: version of Kubernetes 1.35.0 is too new to be used with Talos 1.11.5") ||
				!strings.Contains(msg, "kube-apiserver image is not valid") {
				t.Fatalf("%s (dry run %t): %v", mode, dry, err)
			}
		}
	}
	if st := n.State(); strings.Contains(st.Config, "v1.35.0") || st.Staged || st.Applies != 1 {
		t.Fatalf("a refused config changed the node: staged %t, applies %d", st.Staged, st.Applies)
	}

	// The same config is accepted once the node runs 1.12.
	before := n.State().BootID
	if _, err := c.UpgradeWithOptions(ctx(t, n), client.WithUpgradeImage(goodImage)); err != nil {
		t.Fatal(err)
	}
	waitBoot(t, n, before)
	c = s.client(t, n)
	resp, err := c.ApplyConfiguration(ctx(t, n), &machine.ApplyConfigurationRequest{Data: data, Mode: machine.ApplyConfigurationRequest_AUTO})
	if err != nil || resp.GetMessages()[0].GetMode() != machine.ApplyConfigurationRequest_NO_REBOOT {
		t.Fatalf("on %s: %v %v", upgradedVersion, resp, err)
	}
}
