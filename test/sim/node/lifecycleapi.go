package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Talos 1.13 added two services to machined (v1.13.0 api/machine/image.proto, lifecycle.proto;
// registered in internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go):
// ImageService.Pull puts an image into containerd's store, and LifecycleService.Upgrade runs the
// installer from that store onto the system disk and streams its output, without rebooting.
// `talosctl upgrade` (v1.14.1 cmd/talosctl/cmd/talos/upgrade.go) uses them on a node whose
// Version is >1.13.0-alpha.2 (talosUpgradeAPIVersionRange): Pull, then Upgrade, then Reboot; on
// older nodes it falls back to MachineService.Upgrade, which 1.14 still serves (deprecated, to be
// removed in 1.18). A node before 1.13 has neither service: gRPC answers Unimplemented.

// lifecycleAPISince is the Talos minor (1.<n>) from which machined serves ImageService and
// LifecycleService.
const lifecycleAPISince = 13

// serves1_13 answers Unimplemented, as gRPC does for an unregistered service, on a node that runs
// a release without the service.
func (n *Node) serves1_13(service string) error {
	n.mu.Lock()
	running := n.state.TalosVersion
	n.mu.Unlock()
	if releaseAtLeast(running, lifecycleAPISince) {
		return nil
	}
	return status.Errorf(codes.Unimplemented, "unknown service %s", service)
}

// imageService is machined's ImageService (v1.14.1 internal/app/images/images.go), Pull only.
type imageService struct {
	machine.UnimplementedImageServiceServer
	n *Node
}

// Pull resolves the image in the registry the simulation reaches (the simulated Image Factory)
// and keeps it in the node's image store; it answers with the pulled name and digest, or NotFound
// "error pulling image" (images.go Pull).
func (s imageService) Pull(req *machine.ImageServicePullRequest, srv grpc.ServerStreamingServer[machine.ImageServicePullResponse]) error {
	n := s.n
	if err := n.serves1_13("machine.ImageService"); err != nil {
		return err
	}
	if !n.configured() {
		return status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
	}
	ref := req.GetImageRef()
	if _, err := n.trust.installer(ref); err != nil {
		return status.Errorf(codes.NotFound, "error pulling image: %s", err)
	}
	n.mu.Lock()
	if n.images == nil {
		n.images = map[string]bool{}
	}
	n.images[ref] = true
	n.mu.Unlock()
	return srv.Send(&machine.ImageServicePullResponse{Response: &machine.ImageServicePullResponse_Name{Name: pulledName(ref)}})
}

// pulledName is the name Pull reports: the reference without its tag, at the image's digest
// (images.go: parsedRef.Name() + "@" + digest). The simulated digest is fixed per reference.
func pulledName(ref string) string {
	name := ref
	if slash, colon := strings.LastIndex(ref, "/"), strings.LastIndex(ref, ":"); colon > slash {
		name = ref[:colon]
	}
	return name + "@" + fakeDigest(ref)
}

// lifecycleService is machined's LifecycleService (v1.14.1 internal/app/lifecycle/lifecycle.go),
// Upgrade only.
type lifecycleService struct {
	machine.UnimplementedLifecycleServiceServer
	n *Node
}

// Upgrade runs the installer from the node's image store (it must have been pulled: container.go
// runInstallerContainer finds it with GetImage) onto the system disk, streaming its output and
// then its exit code. It neither reboots nor checks etcd: the client reboots afterwards, and
// Talos' etcd check on upgrade is MachineService.Upgrade's (v1alpha1_server.go). One install or
// upgrade at a time (lifecycle.go: FailedPrecondition). The installer writes the system disk while
// the machine runs: no services stop and nothing is unmounted, so the fault "a filesystem cannot
// be unmounted" (SetUpgradeAborts) is MachineService.Upgrade's sequence alone.
func (s lifecycleService) Upgrade(req *machine.LifecycleServiceUpgradeRequest, srv grpc.ServerStreamingServer[machine.LifecycleServiceUpgradeResponse]) error {
	n := s.n
	if err := n.serves1_13("machine.LifecycleService"); err != nil {
		return err
	}
	if !n.configured() {
		return status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
	}
	n.mu.Lock()
	busy := n.installing
	n.installing = true
	n.mu.Unlock()
	if busy {
		return status.Error(codes.FailedPrecondition, "another installation/upgrade is already in progress")
	}
	defer func() {
		n.mu.Lock()
		n.installing = false
		n.mu.Unlock()
	}()
	ref := req.GetSource().GetImageName()
	if ref == "" {
		return status.Error(codes.InvalidArgument, "installer image name is required")
	}
	refuse := func(err error) error {
		n.trust.record(n.address.String(), TimelineUpgradeRefused, err.Error())
		return err
	}
	n.mu.Lock()
	pulled := n.images[ref]
	n.mu.Unlock()
	if !pulled {
		return refuse(status.Error(codes.Internal, fmt.Sprintf("upgrade failed: installer image %q not found in containerd store: image %q: not found", ref, ref)))
	}
	target, err := n.trust.installer(ref)
	if err != nil {
		return refuse(status.Error(codes.Internal, fmt.Sprintf("upgrade failed: %v", err)))
	}
	n.trust.record(n.address.String(), TimelineUpgrade, ref+" lifecycle")
	progress := func(p *machine.LifecycleServiceInstallProgress) error {
		return srv.Send(&machine.LifecycleServiceUpgradeResponse{Progress: p})
	}
	n.mu.Lock()
	preflight := n.installerPreflight(target)
	running := n.state.TalosVersion
	n.mu.Unlock()
	if preflight != nil {
		// The installer's pre-flight checks (cmd/installer/pkg/install/preflight.go, run in upgrade
		// mode) fail: it prints the error and exits with ExitEnvironment (the error is tagged
		// EnvironmentTag; cmd/installer/cmd/installer/root.go, pkg/installer/exitcode). Its output
		// and exit code are the stream (container.go runInstallerContainer); the call succeeds,
		// nothing is installed, and nothing reboots: machined runs no sequence around this call.
		msg := "pre-flight checks failed: " + preflight.Error()
		n.trust.record(n.address.String(), TimelineUpgradeRefused, msg)
		for _, line := range []string{"running pre-flight checks", "host Talos version: " + running, msg} {
			if err := progress(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_Message{Message: line + "\n"}}); err != nil {
				return err
			}
		}
		return progress(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_ExitCode{ExitCode: constants.ExitEnvironment}})
	}
	for _, msg := range []string{"validating installer image", "upgrading the system disk", "installation of " + target.version + " complete"} {
		if err := progress(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_Message{Message: msg}}); err != nil {
			return err
		}
	}
	n.mu.Lock()
	// The installer wrote the new image: the next boot runs it.
	n.installed = &target
	n.mu.Unlock()
	return progress(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_ExitCode{ExitCode: 0}})
}

// fakeDigest is the simulated image's digest: fixed per reference.
func fakeDigest(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}
