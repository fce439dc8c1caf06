package node

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
)

// The tests of upgradek8s.go run their nodes on 127.0.26.x.
var nextK8sHost atomic.Int32

// upgradable is a configured control plane (Talos v1.14.1, so it renders the final-* configs as
// the nodes upgrade-k8s expects) of a new cluster, and an admin client of it.
func upgradable(t *testing.T, patch string) (*Node, *client.Client, []byte) {
	t.Helper()
	addr := "127.0.26." + strconv.Itoa(int(nextK8sHost.Add(1))+10)
	n, err := New(addr, APIPort, "v1.14.1", bootedSchematic, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	cl := newCluster(t, "lab")
	cfg := patched(t, cl.controlPlane, "machine:\n  network:\n    hostname: cp-k8s-"+strconv.Itoa(int(nextK8sHost.Load()))+"\n")
	if patch != "" {
		cfg = patched(t, cfg, patch)
	}
	if err := apply(t, insecure(t, n), n, cfg); err != nil {
		t.Fatal(err)
	}
	return n, mutual(t, n, cl.talosconfig), cfg
}

// command is the first container's command of a StaticPod, as go-kubernetes' checks read it
// (staticPodTypedResourceToK8sPodSpec: the spec as a Pod).
func command(t *testing.T, res *k8s.StaticPod) []string {
	t.Helper()
	spec, _ := res.TypedSpec().Pod["spec"].(map[string]any)
	containers, _ := spec["containers"].([]any)
	if len(containers) == 0 {
		t.Fatalf("static pod %s has no containers: %v", res.Metadata().ID(), res.TypedSpec().Pod)
	}
	c, _ := containers[0].(map[string]any)
	var out []string
	for _, a := range c["command"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func TestStaticPodsAndTheKubeletSpecCarryTheFlagsUpgradeChecksRead(t *testing.T) {
	n, c, cfg := upgradable(t, "cluster:\n  apiServer:\n    extraArgs:\n      feature-gates: AnyVolumeDataSource=true\n"+
		"  controllerManager:\n    extraArgs:\n      pod-eviction-timeout: 1m\n"+
		"machine:\n  kubelet:\n    extraArgs:\n      containerd: /run/containerd/containerd.sock\n")
	for _, tc := range []struct{ id, want string }{
		{k8s.APIServerID, "--feature-gates=AnyVolumeDataSource=true"},
		{k8s.ControllerManagerID, "--pod-eviction-timeout=1m"},
		{k8s.SchedulerID, "/usr/local/bin/kube-scheduler"},
	} {
		res, err := safe.StateGetByID[*k8s.StaticPod](ctx(t, n), c.COSI, tc.id)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		if cmd := command(t, res); !slices.Contains(cmd, tc.want) {
			t.Errorf("%s command %q lacks %q", tc.id, cmd, tc.want)
		}
	}
	// The pod carries the version of the config it was rendered from: final-* on Talos 1.14.
	pod, err := safe.StateGetByID[*k8s.StaticPod](ctx(t, n), c.COSI, k8s.APIServerID)
	if err != nil {
		t.Fatal(err)
	}
	final, err := safe.StateGetByID[*k8s.APIServerConfig](ctx(t, n), c.COSI, k8s.FinalAPIServerConfigID)
	if err != nil {
		t.Fatal(err)
	}
	annotations := pod.TypedSpec().Pod["metadata"].(map[string]any)["annotations"].(map[string]any)
	if got := annotations[annotationConfigVersion]; got != final.Metadata().Version().String() {
		t.Errorf("config-version %v, want final-kube-apiserver's %s", got, final.Metadata().Version())
	}
	spec, err := safe.StateGetByID[*k8s.KubeletSpec](ctx(t, n), c.COSI, k8s.KubeletID)
	if err != nil {
		t.Fatal(err)
	}
	if spec.TypedSpec().Image != "ghcr.io/siderolabs/kubelet:v1.34.1" {
		t.Errorf("kubelet image %q", spec.TypedSpec().Image)
	}
	for _, want := range []string{"--containerd=/run/containerd/containerd.sock", "--node-ip=" + n.address.String(), "--config=/etc/kubernetes/kubelet.yaml"} {
		if !slices.Contains(spec.TypedSpec().Args, want) {
			t.Errorf("kubelet args %q lack %q", spec.TypedSpec().Args, want)
		}
	}

	// A change of the config renders them anew: the gate and the flag are gone.
	changed := patched(t, cfg, "cluster:\n  apiServer:\n    extraArgs:\n      $patch: delete\nmachine:\n  kubelet:\n    extraArgs:\n      $patch: delete\n")
	if err := applyMode(t, c, n, changed, machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	pod, err = safe.StateGetByID[*k8s.StaticPod](ctx(t, n), c.COSI, k8s.APIServerID)
	if err != nil {
		t.Fatal(err)
	}
	if cmd := command(t, pod); slices.ContainsFunc(cmd, func(a string) bool { return strings.HasPrefix(a, "--feature-gates") }) {
		t.Errorf("feature gates still in %q", cmd)
	}
	spec, err = safe.StateGetByID[*k8s.KubeletSpec](ctx(t, n), c.COSI, k8s.KubeletID)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(spec.TypedSpec().Args, func(a string) bool { return strings.HasPrefix(a, "--containerd=") }) {
		t.Errorf("kubelet args %q still carry --containerd", spec.TypedSpec().Args)
	}
}

// entries is n's timeline entries of a kind.
func entries(n *Node, kind string) []TimelineEntry {
	var out []TimelineEntry
	for _, e := range trust.Timeline() {
		if e.Node == n.address.String() && e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestImagePullIsRecordedPerNode(t *testing.T) {
	n, c, _ := upgradable(t, "")
	ref := "registry.k8s.io/kube-apiserver:v1.35.0"
	//nolint:staticcheck // the legacy call upgrade-k8s makes
	if err := c.ImagePull(ctx(t, n), common.ContainerdNamespace_NS_CRI, ref); err != nil {
		t.Fatal(err)
	}
	got := entries(n, TimelineImagePull)
	if len(got) != 1 || got[0].Detail != ref {
		t.Fatalf("image-pull entries %+v, want one for %s", got, ref)
	}
}

func TestComponentsStartingANewVersionAreInTheTimeline(t *testing.T) {
	n, c, cfg := upgradable(t, "")
	// A first start is not an entry (older tests compare whole timelines): its version is the
	// config's.
	if first := entries(n, TimelineComponent); len(first) != 0 {
		t.Fatalf("component entries at the first start: %+v", first)
	}
	mark := 0
	// The kubelet Service is destroyed while the kubelet restarts, then back running and healthy:
	// what upgrade-k8s waits for.
	watchCtx, cancel := context.WithCancel(ctx(t, n))
	defer cancel()
	watch := make(chan state.Event, 64)
	if err := c.COSI.Watch(watchCtx, resource.NewMetadata(v1alpha1.NamespaceName, v1alpha1.ServiceType, "kubelet", resource.VersionUndefined), watch); err != nil {
		t.Fatal(err)
	}
	if ev := <-watch; ev.Type != state.Created {
		t.Fatalf("first watch event %v", ev.Type)
	}
	changed := patched(t, cfg, "cluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.35.2\n"+
		"machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.2\n")
	if err := applyMode(t, c, n, changed, machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	destroyed := false
	for ev := range watch {
		if ev.Type == state.Destroyed {
			destroyed = true
			continue
		}
		if svc, ok := ev.Resource.(*v1alpha1.Service); ok && destroyed && svc.TypedSpec().Running && svc.TypedSpec().Healthy {
			break
		}
	}
	eventually(t, "the kubelet's component entry", func() bool { return len(entries(n, TimelineComponent)) >= mark+2 })
	got := map[string]string{}
	for _, e := range entries(n, TimelineComponent)[mark:] {
		got[e.Component] = e.Version
	}
	if len(got) != 2 || got[KubeAPIServer] != "1.35.2" || got["kubelet"] != "1.35.2" {
		t.Fatalf("component entries after the change %v, want kube-apiserver and kubelet at 1.35.2", got)
	}
}

func TestAKubeletThatNeverTurnsReadyStaysUnhealthy(t *testing.T) {
	n, c, cfg := upgradable(t, "")
	n.SetKubeletNeverReady(true)
	if !n.State().KubeletNeverReady {
		t.Fatal("the fault is not in the state")
	}
	changed := patched(t, cfg, "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.2\n")
	if err := applyMode(t, c, n, changed, machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	kubelet := func() *v1alpha1.Service {
		svc, err := safe.StateGetByID[*v1alpha1.Service](ctx(t, n), c.COSI, "kubelet")
		if err != nil {
			return nil
		}
		return svc
	}
	eventually(t, "the new kubelet runs", func() bool { return n.runningKubeletVersion() == "v1.35.2" && kubelet() != nil })
	if svc := kubelet(); !svc.TypedSpec().Running || svc.TypedSpec().Healthy {
		t.Fatalf("kubelet service %+v, want running and not healthy", svc.TypedSpec())
	}
	if ms := machineStatusOf(t, c, n); ms.TypedSpec().Status.Ready {
		t.Fatalf("MachineStatus ready with a kubelet that is not: %+v", ms.TypedSpec().Status)
	}
	n.SetKubeletNeverReady(false)
	eventually(t, "the kubelet turns healthy once the fault is cleared", func() bool {
		svc := kubelet()
		return svc != nil && svc.TypedSpec().Healthy
	})
}
