package node

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// lagged is a configured control plane named cp-lag whose Talos refreshes its static pods' status
// every lag.
func lagged(t *testing.T, lag time.Duration) (*Node, *client.Client, cluster, []byte) {
	t.Helper()
	addr := "127.0.7." + strconv.Itoa(int(nextHost.Add(1))+10)
	n, err := New(addr, APIPort, "v1.11.5", bootedSchematic, trust, WithStaticPodLag(lag))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	cl := newCluster(t, "lab")
	cfg := patched(t, cl.controlPlane, "machine:\n  network:\n    hostname: cp-lag\n")
	if err := apply(t, insecure(t, n), n, cfg); err != nil {
		t.Fatal(err)
	}
	return n, mutual(t, n, cl.talosconfig), cl, cfg
}

func machineStatusOf(t *testing.T, c *client.Client, n *Node) *runtime.MachineStatus {
	t.Helper()
	ms, err := safe.StateGetByID[*runtime.MachineStatus](ctx(t, n), c.COSI, runtime.MachineStatusID)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func configVersion(t *testing.T, c *client.Client, n *Node) string {
	t.Helper()
	res, err := safe.StateGetByID[*k8s.APIServerConfig](ctx(t, n), c.COSI, k8s.APIServerConfigID)
	if err != nil {
		t.Fatal(err)
	}
	return res.Metadata().Version().String()
}

// eventually polls cond every 20ms for up to 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestABadAPIServerChangeShowsInMachineStatusOnlyAtTalosNextRefresh(t *testing.T) {
	// The lag is long enough that the checks right after the apply run before the refresh.
	n, c, _, cfg := lagged(t, 3*time.Second)
	before := configVersion(t, c, n)
	if ms := machineStatusOf(t, c, n); !ms.TypedSpec().Status.Ready {
		t.Fatalf("a fresh control plane is not ready: %+v", ms.TypedSpec().Status)
	}
	if err := n.SetStaticPodFails(KubeAPIServer, true); err != nil {
		t.Fatal(err)
	}
	changed := patched(t, cfg, "cluster:\n  apiServer:\n    extraArgs:\n      no-such-flag: \"true\"\n")
	if err := applyMode(t, c, n, changed, machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	after := configVersion(t, c, n)
	if after == before {
		t.Fatalf("APIServerConfig version stayed %s after an apiServer change", before)
	}
	// Talos has not looked at the pods again: the machine still says running and ready.
	if ms := machineStatusOf(t, c, n); !ms.TypedSpec().Status.Ready {
		t.Fatalf("MachineStatus turned not ready before Talos' refresh: %+v", ms.TypedSpec().Status)
	}
	pods := n.mirrorPods()
	if len(pods) != 3 || pods[0].component != KubeAPIServer || pods[0].version != after || pods[0].ready {
		t.Fatalf("the kube-apiserver pod should run config version %s, not ready: %+v", after, pods)
	}
	// At the refresh it shows, and stays.
	eventually(t, "MachineStatus not ready", func() bool { return !machineStatusOf(t, c, n).TypedSpec().Status.Ready })
	unmet := machineStatusOf(t, c, n).TypedSpec().Status.UnmetConditions
	if len(unmet) != 1 || unmet[0].Name != "staticPods" || unmet[0].Reason != "kube-system/kube-apiserver-cp-lag not ready" {
		t.Fatalf("unmet conditions %+v", unmet)
	}
	status, err := safe.StateGetByID[*k8s.StaticPodStatus](ctx(t, n), c.COSI, "kube-system/kube-apiserver-cp-lag")
	if err != nil {
		t.Fatal(err)
	}
	if got := status.TypedSpec().PodStatus["conditions"]; !strings.Contains(strings.ReplaceAll(fmtAny(got), " ", ""), "status:False") {
		t.Fatalf("StaticPodStatus conditions %v", got)
	}
	// The fault cleared, the kubelet's next restart of the pod succeeds and Talos sees it.
	if err := n.SetStaticPodFails(KubeAPIServer, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "MachineStatus ready again", func() bool { return machineStatusOf(t, c, n).TypedSpec().Status.Ready })
}

func fmtAny(v any) string {
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				b.WriteString(k + ":")
				walk(e)
				b.WriteString(",")
			}
		case string:
			b.WriteString(x)
		}
	}
	walk(v)
	return b.String()
}

func TestAChangeToOneComponentLeavesTheOthersConfigVersion(t *testing.T) {
	n, c, _, cfg := lagged(t, 200*time.Millisecond)
	before := n.mirrorPods()
	changed := patched(t, cfg, "cluster:\n  scheduler:\n    extraArgs:\n      v: \"2\"\n")
	if err := applyMode(t, c, n, changed, machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	after := n.mirrorPods()
	for i, pod := range after {
		moved := pod.version != before[i].version
		if moved != (pod.component == KubeScheduler) {
			t.Errorf("%s: config version %s -> %s", pod.component, before[i].version, pod.version)
		}
	}
	eventually(t, "the new scheduler pod Ready", func() bool { return n.mirrorPods()[2].ready })
}

func TestAKubeletChangeRestartsTheKubeletAndItsVersionFollows(t *testing.T) {
	n, c, _, cfg := lagged(t, 2*time.Second)
	if got := n.runningKubeletVersion(); got != "v1.34.1" {
		t.Fatalf("kubelet version %q", got)
	}
	changed := patched(t, cfg, "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n")
	if err := applyMode(t, c, n, changed, machine.ApplyConfigurationRequest_NO_REBOOT); err != nil {
		t.Fatal(err)
	}
	kubelet := func() *machine.ServiceInfo {
		list, err := c.ServiceList(ctx(t, n))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.GetMessages()[0].GetServices() {
			if s.GetId() == "kubelet" {
				return s
			}
		}
		t.Fatal("no kubelet service")
		return nil
	}
	if s := kubelet(); s.GetState() == "Running" || n.runningKubeletVersion() != "v1.34.1" {
		t.Fatalf("right after the apply the kubelet should be restarting on v1.34.1: %s, %s", s.GetState(), n.runningKubeletVersion())
	}
	if ms := machineStatusOf(t, c, n); ms.TypedSpec().Status.Ready {
		t.Fatal("MachineStatus' services check sees the kubelet restart at once")
	}
	eventually(t, "the kubelet back, healthy", func() bool {
		s := kubelet()
		return s.GetState() == "Running" && s.GetHealth().GetHealthy()
	})
	if got := n.runningKubeletVersion(); got != "v1.34.2" {
		t.Fatalf("kubelet version %q after the restart", got)
	}
	eventually(t, "MachineStatus ready", func() bool { return machineStatusOf(t, c, n).TypedSpec().Status.Ready })
}
