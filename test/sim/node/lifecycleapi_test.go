package node

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/sim/factory"
)

// lifecycleNode is a configured control plane (a lone worker has no trustd to get its API
// certificate from) on 127.0.31.<host> running version, whose installers come
// from a factory that lists v1.11.5, v1.13.9 and v1.14.1.
func lifecycleNode(t *testing.T, host, version string) (*Node, *client.Client) {
	t.Helper()
	tr := NewTrust()
	f := factory.New([]string{"v1.11.5", "v1.13.9", "v1.14.1"}, nil)
	f.Host = factoryHost
	tr.SetInstallers(f)
	n, err := New("127.0.31."+host, APIPort, version, bootedSchematic, tr, WithRebootTime(testRebootTime))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	cl := newCluster(t, "lc"+host)
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	return n, mutual(t, n, cl.talosconfig)
}

// lifecycleUpgrade calls LifecycleService.Upgrade and reads its stream: the messages, the exit
// code, or the call's error.
func lifecycleUpgrade(t *testing.T, c *client.Client, n *Node, image string) ([]string, int32, error) {
	t.Helper()
	stream, err := c.LifecycleClient.Upgrade(ctx(t, n), &machine.LifecycleServiceUpgradeRequest{Source: &machine.InstallArtifactsSource{ImageName: image}})
	if err != nil {
		return nil, 0, err
	}
	var msgs []string
	exit := int32(-1)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return msgs, exit, nil
		}
		if err != nil {
			return msgs, exit, err
		}
		switch p := resp.GetProgress().GetResponse().(type) {
		case *machine.LifecycleServiceInstallProgress_Message:
			msgs = append(msgs, p.Message)
		case *machine.LifecycleServiceInstallProgress_ExitCode:
			exit = p.ExitCode
		}
	}
}

func pull(t *testing.T, c *client.Client, n *Node, image string) (string, error) {
	t.Helper()
	stream, err := c.ImageClient.Pull(ctx(t, n), &machine.ImageServicePullRequest{ImageRef: image})
	if err != nil {
		return "", err
	}
	var name string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return name, nil
		}
		if err != nil {
			return name, err
		}
		name += resp.GetName()
	}
}

func TestLifecycleServiceUpgradesA113NodeFromThePulledInstaller(t *testing.T) {
	n, c := lifecycleNode(t, "11", "v1.13.9")
	image := factoryHost + "/installer/" + emptySchematic + ":v1.14.1"
	// Not pulled yet: the installer is not in containerd's store.
	if _, _, err := lifecycleUpgrade(t, c, n, image); status.Code(err) != codes.Internal {
		t.Fatalf("upgrade before a pull: %v, want Internal (image not in the store)", err)
	}
	if _, err := pull(t, c, n, factoryHost+"/installer/"+emptySchematic+":v9.9.9"); status.Code(err) != codes.NotFound {
		t.Fatalf("pull of an image the factory lacks: %v, want NotFound", err)
	}
	name, err := pull(t, c, n, image)
	if err != nil || name != pulledName(image) {
		t.Fatalf("pull: %q, %v", name, err)
	}
	msgs, exit, err := lifecycleUpgrade(t, c, n, image)
	if err != nil || exit != 0 || len(msgs) == 0 {
		t.Fatalf("upgrade: messages %q, exit code %d, %v", msgs, exit, err)
	}
	// The upgrade only installs: the node runs its release until it reboots.
	if v := n.State().TalosVersion; v != "v1.13.9" {
		t.Fatalf("before the reboot the node runs %s", v)
	}
	if err := c.Reboot(ctx(t, n)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node runs v1.14.1 after the reboot", func() bool { return n.State().TalosVersion == "v1.14.1" })
}

func TestA111NodeHasNoLifecycleService(t *testing.T) {
	n, c := lifecycleNode(t, "12", "v1.11.5")
	image := factoryHost + "/installer/" + emptySchematic + ":v1.13.9"
	if _, err := pull(t, c, n, image); status.Code(err) != codes.Unimplemented {
		t.Errorf("ImageService.Pull on 1.11.5: %v, want Unimplemented", err)
	}
	if _, _, err := lifecycleUpgrade(t, c, n, image); status.Code(err) != codes.Unimplemented {
		t.Errorf("LifecycleService.Upgrade on 1.11.5: %v, want Unimplemented", err)
	}
}

// The installer runs inside LifecycleService.Upgrade (v1.14.1 internal/app/lifecycle/lifecycle.go,
// container.go runInstallerContainer): its pre-flight refusal (cmd/installer/pkg/install/
// preflight.go) is its output and a non-zero exit code in the stream, the call itself succeeds,
// nothing is installed, and nothing reboots (the call never reboots).
func TestAnInstallerPreflightRefusalIsTheStreamsOutputAndExitCodeAndNothingIsInstalled(t *testing.T) {
	n, c := lifecycleNode(t, "13", "v1.13.9")
	image := factoryHost + "/installer/" + emptySchematic + ":v1.11.5"
	if _, err := pull(t, c, n, image); err != nil {
		t.Fatal(err)
	}
	boot := n.State().BootID
	msgs, exit, err := lifecycleUpgrade(t, c, n, image)
	if err != nil {
		t.Fatalf("upgrade: %v, want the call to succeed with the installer's exit code", err)
	}
	if exit != 4 { // constants.ExitEnvironment: the pre-flight error is tagged EnvironmentTag
		t.Errorf("exit code %d, want 4 (environment error)", exit)
	}
	if out := strings.Join(msgs, ""); !strings.Contains(out, "pre-flight checks failed: host version 1.13.9 is too new to downgrade to Talos 1.11.5\n") {
		t.Errorf("installer output %q does not carry the pre-flight refusal", out)
	}
	if err := c.Reboot(ctx(t, n)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node back from the reboot", func() bool { s := n.State(); return s.Up && s.BootID != boot })
	if v := n.State().TalosVersion; v != "v1.13.9" {
		t.Errorf("after a refused install and a reboot the node runs %s, want v1.13.9", v)
	}
}
