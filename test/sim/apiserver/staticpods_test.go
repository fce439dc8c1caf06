package apiserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

// within polls cond every 100ms for up to a minute.
func within(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s; seen %s", what, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStaticPodsAreMirroredAndEachControlPlaneAnswersOnItsOwn(t *testing.T) {
	cluster := simtest.NewCluster(t, clusterName, "https://"+net.JoinHostPort("127.0.38.11", "6443"))
	cluster.RealControlPlane(t, -1)
	nodes := []*simNode{
		{address: "127.0.38.11", hostname: "cp-1", controlPlane: true},
		{address: "127.0.38.12", hostname: "cp-2", controlPlane: true},
		{address: "127.0.38.13", hostname: "cp-3", controlPlane: true},
		{address: "127.0.38.21", hostname: "worker-1"},
	}
	for _, n := range nodes {
		n.Node = cluster.NodeOn(t, n.address, toolbin.FreePort(t, n.address), "v1.11.5", intelUcodeSchematic, node.WithStaticPodLag(time.Second))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	configs := map[string][]byte{}
	for _, n := range nodes {
		kind := talosmachine.TypeWorker
		if n.controlPlane {
			kind = talosmachine.TypeControlPlane
		}
		data := cluster.Config(t, kind, kubernetesVersion, "")
		configs[n.hostname] = simtest.Patched(t, data, "machine:\n  network:\n    hostname: "+n.hostname+"\n")
		c, err := client.New(ctx, client.WithEndpoints(n.Addr()), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: configs[n.hostname]})
		_ = c.Close()
		if err != nil {
			t.Fatalf("%s: apply: %v", n.hostname, err)
		}
	}
	talos := func(n *simNode) (*client.Client, context.Context) {
		c, err := client.New(ctx, client.WithConfig(cluster.Talosconfig), client.WithEndpoints(n.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, client.WithNode(ctx, n.address)
	}
	cp1, cp1ctx := talos(nodes[0])
	if err := cp1.Bootstrap(cp1ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp1.Kubeconfig(cp1ctx)
	if err != nil {
		t.Fatal(err)
	}
	restConfig, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	restConfig.Timeout = 5 * time.Second
	// at is the admin's client through one control plane's own :6443.
	at := func(n *simNode) *kubernetes.Clientset {
		cfg := rest.CopyConfig(restConfig)
		cfg.Host = "https://" + net.JoinHostPort(n.address, "6443")
		return kubernetes.NewForConfigOrDie(cfg)
	}
	readyz := func(n *simNode) error {
		_, err := at(n).Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}
	admin := at(nodes[0])
	apiServerConfigVersion := func(n *simNode) string {
		c, cctx := talos(n)
		res, err := safe.StateGetByID[*k8s.APIServerConfig](cctx, c.COSI, k8s.APIServerConfigID)
		if err != nil {
			t.Fatal(err)
		}
		return res.Metadata().Version().String()
	}
	mirror := func(name string) (*corev1.Pod, error) {
		return admin.CoreV1().Pods("kube-system").Get(ctx, name, metav1.GetOptions{})
	}
	podReady := func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}

	t.Run("each control plane answers /readyz on its own address and runs mirrored static pods", func(t *testing.T) {
		for _, n := range nodes[:3] {
			within(t, n.hostname+" /readyz", func() (bool, string) {
				err := readyz(n)
				return err == nil, errText(err)
			})
		}
		if err := readyz(nodes[3]); err == nil {
			t.Error("a worker answers :6443")
		}
		for _, n := range nodes[:3] {
			want := apiServerConfigVersion(n)
			for _, component := range []string{node.KubeAPIServer, node.KubeControllerManager, node.KubeScheduler} {
				name := component + "-" + n.hostname
				within(t, "mirror pod "+name, func() (bool, string) {
					p, err := mirror(name)
					if err != nil {
						return false, err.Error()
					}
					ok := p.Spec.NodeName == n.hostname && p.Status.HostIP == n.address && p.Labels["k8s-app"] == component && podReady(p) &&
						(component != node.KubeAPIServer || p.Annotations["talos.dev/config-version"] == want)
					return ok, p.Spec.NodeName + " " + p.Status.HostIP + " " + p.Annotations["talos.dev/config-version"]
				})
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("an API server that refuses its flags takes only its control plane's :6443 down", func(t *testing.T) {
		cp2 := nodes[1]
		before := apiServerConfigVersion(cp2)
		if err := cp2.SetStaticPodFails(node.KubeAPIServer, true); err != nil {
			t.Fatal(err)
		}
		c, cctx := talos(cp2)
		changed := simtest.Patched(t, configs["cp-2"], "cluster:\n  apiServer:\n    extraArgs:\n      no-such-flag: \"true\"\n")
		if _, err := c.ApplyConfiguration(cctx, &machine.ApplyConfigurationRequest{Data: changed, Mode: machine.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
			t.Fatal(err)
		}
		after := apiServerConfigVersion(cp2)
		if after == before {
			t.Fatalf("config version stayed %s", before)
		}
		within(t, "kube-apiserver-cp-2 at the new version, not Ready", func() (bool, string) {
			p, err := mirror("kube-apiserver-cp-2")
			if err != nil {
				return false, err.Error()
			}
			return p.Annotations["talos.dev/config-version"] == after && !podReady(p), p.Annotations["talos.dev/config-version"]
		})
		if err := readyz(cp2); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("cp-2 /readyz: %v, want connection refused", err)
		}
		for _, n := range []*simNode{nodes[0], nodes[2]} {
			if err := readyz(n); err != nil {
				t.Errorf("%s /readyz: %v", n.hostname, err)
			}
		}
	})

	t.Run("a kubelet change restarts the kubelet and the Node reports its version", func(t *testing.T) {
		w := nodes[3]
		c, cctx := talos(w)
		changed := simtest.Patched(t, configs["worker-1"], "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.5\n")
		if _, err := c.ApplyConfiguration(cctx, &machine.ApplyConfigurationRequest{Data: changed, Mode: machine.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
			t.Fatal(err)
		}
		within(t, "worker-1 kubeletVersion v1.34.5", func() (bool, string) {
			k, err := admin.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return k.Status.NodeInfo.KubeletVersion == "v1.34.5", k.Status.NodeInfo.KubeletVersion
		})
		configs["worker-1"] = changed
	})

	t.Run("a cordon stays through the simulated kubelet and node-apply", func(t *testing.T) {
		if _, err := admin.CoreV1().Nodes().Patch(ctx, "worker-1", types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		c, cctx := talos(nodes[3])
		changed := simtest.Patched(t, configs["worker-1"], "machine:\n  nodeLabels:\n    example.com/tier: web\n")
		if _, err := c.ApplyConfiguration(cctx, &machine.ApplyConfigurationRequest{Data: changed, Mode: machine.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
			t.Fatal(err)
		}
		within(t, "worker-1 labelled and still cordoned", func() (bool, string) {
			k, err := admin.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return k.Labels["example.com/tier"] == "web" && k.Spec.Unschedulable, k.Labels["example.com/tier"]
		})
		k, err := admin.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{})
		if err != nil || !k.Spec.Unschedulable {
			t.Fatalf("worker-1 uncordoned by the simulation: %v", err)
		}
	})
	t.Run("the kubelet runs the pods bound to its node, evictions honour a PDB, and a node that is down does nothing", func(t *testing.T) {
		// No scheduler, no controllers: the pods are bound by spec.nodeName, and the test plays
		// the disruption controller by setting the PDB's status (observedGeneration = generation),
		// without which every eviction is refused as "still being processed".
		ns := "default"
		pod := func(name string) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			}
		}
		for _, name := range []string{"web-1", "web-2"} {
			if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod(name), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{"web-1", "web-2"} {
			within(t, name+" Running and Ready", func() (bool, string) {
				p, err := admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				return p.Status.Phase == corev1.PodRunning && podReady(p) && p.Status.HostIP == "127.0.38.21", string(p.Status.Phase)
			})
		}
		one := intstr.FromInt32(1)
		pdb, err := admin.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 1, CurrentHealthy: 2, DesiredHealthy: 1, ExpectedPods: 2}
		if _, err := admin.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		evict := func(name string) error {
			return admin.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
		}
		if err := evict("web-1"); err != nil {
			t.Fatalf("evicting web-1 with one disruption allowed: %v", err)
		}
		within(t, "web-1 deleted by worker-1's kubelet", func() (bool, string) {
			_, err := admin.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{})
			return apierrors.IsNotFound(err), errText(err)
		})
		// The cause names the budget; since Kubernetes 1.37 its reason depends on the status: here
		// (currentHealthy 2 > desiredHealthy 1, no controller to recount) "does not allow evicting
		// pods currently", where 1.34 said "needs 1 healthy pods and has 2 currently".
		err = evict("web-2")
		if !apierrors.IsTooManyRequests(err) || !slices.ContainsFunc(err.(apierrors.APIStatus).Status().Details.Causes, func(c metav1.StatusCause) bool {
			return c.Type == policyv1.DisruptionBudgetCause && strings.HasPrefix(c.Message, "The disruption budget web ")
		}) {
			t.Fatalf("evicting web-2 with no disruption left: %v (%v), want 429 naming the budget", err, err.(apierrors.APIStatus).Status().Details)
		}

		// worker-1 goes down: a pod deleted meanwhile stays terminating until it is back. (Stopped
		// first: a kubelet round between the delete and the stop would finish the pod.)
		nodes[3].Stop()
		if err := admin.CoreV1().Pods(ns).Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod("web-3"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Ten of the kubelets' pod rounds pass with the machine down.
		rounds := cluster.Trust.PodRounds()
		within(t, "ten pod rounds", func() (bool, string) {
			return cluster.Trust.PodRounds() >= rounds+10, fmt.Sprint(cluster.Trust.PodRounds())
		})
		p, err := admin.CoreV1().Pods(ns).Get(ctx, "web-2", metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp == nil {
			t.Fatalf("web-2 while worker-1 is down: %v, want terminating", err)
		}
		if p, err := admin.CoreV1().Pods(ns).Get(ctx, "web-3", metav1.GetOptions{}); err != nil || p.Status.Phase == corev1.PodRunning {
			t.Fatalf("web-3 started on a machine that is down: %v %s", err, p.Status.Phase)
		}
		if err := nodes[3].Start(); err != nil {
			t.Fatal(err)
		}
		within(t, "web-2 gone and web-3 Running once worker-1 is back", func() (bool, string) {
			_, gone := admin.CoreV1().Pods(ns).Get(ctx, "web-2", metav1.GetOptions{})
			p, err := admin.CoreV1().Pods(ns).Get(ctx, "web-3", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return apierrors.IsNotFound(gone) && p.Status.Phase == corev1.PodRunning, errText(gone) + " " + string(p.Status.Phase)
		})
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
