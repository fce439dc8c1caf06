package apiserver

import (
	"context"
	"crypto/tls"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/simtest"
)

// Talos creates its bootstrap manifests once the API server answers and never updates them
// (manifest_apply.go); the simulation stands in for kube-controller-manager with the status of
// kube-system's Deployments and DaemonSets and with their pods, so a rollout wait on them and
// talosctl health's pod checks finish.
func TestBootstrapManifestsAreCreatedOnceAndWorkloadsReportARollout(t *testing.T) {
	cluster := simtest.NewCluster(t, clusterName, "https://"+net.JoinHostPort("127.0.39.11", "6443"))
	cluster.RealControlPlane(t, -1)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cp := cluster.NodeOn(t, "127.0.39.11", toolbin.FreePort(t, "127.0.39.11"), "v1.14.1", intelUcodeSchematic)
	worker := cluster.NodeOn(t, "127.0.39.21", toolbin.FreePort(t, "127.0.39.21"), "v1.14.1", intelUcodeSchematic)
	cpConfig := simtest.Patched(t, cluster.Config(t, talosmachine.TypeControlPlane, kubernetesVersion, ""), "machine:\n  network:\n    hostname: cp-1\n")
	for n, data := range map[string][]byte{cp.Addr(): cpConfig,
		worker.Addr(): simtest.Patched(t, cluster.Config(t, talosmachine.TypeWorker, kubernetesVersion, ""), "machine:\n  network:\n    hostname: worker-1\n")} {
		c, err := client.New(ctx, client.WithEndpoints(n), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: data})
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	talos, err := client.New(ctx, client.WithConfig(cluster.Talosconfig), client.WithEndpoints(cp.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = talos.Close() })
	tctx := client.WithNode(ctx, "127.0.39.11")
	if err := talos.Bootstrap(tctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := talos.Kubeconfig(tctx)
	if err != nil {
		t.Fatal(err)
	}
	restConfig, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(restConfig)
	image := func() string {
		d, err := admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}

	within(t, "CoreDNS created by Talos, rolled out", func() (bool, string) {
		d, err := admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Annotations["config.k8s.io/owning-inventory"] == "talos-bootstrap-manifests-inventory" &&
			d.Status.ObservedGeneration == d.Generation && d.Status.ReadyReplicas == 2, d.Status.String()
	})
	within(t, "kube-proxy on both Nodes", func() (bool, string) {
		ds, err := admin.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ds.Status.ObservedGeneration == ds.Generation && ds.Status.NumberReady == 2 && ds.Status.DesiredNumberScheduled == 2, ds.Status.String()
	})
	// The modelled controllers keep their pods, which the kubelets start: kube-proxy one per Node,
	// owned by its DaemonSet (so a drain skips it); CoreDNS its two replicas.
	within(t, "a Ready kube-proxy pod on each Node", func() (bool, string) {
		pods := readyPods(ctx, admin, "k8s-app=kube-proxy")
		ok := len(pods) == 2 && pods[0].Spec.NodeName != pods[1].Spec.NodeName
		for _, p := range pods {
			ref := metav1.GetControllerOf(&p)
			ok = ok && ref != nil && ref.Kind == "DaemonSet" && ref.Name == "kube-proxy" && p.Name == "kube-proxy-"+p.Spec.NodeName
		}
		return ok, describePods(pods)
	})
	within(t, "two Ready CoreDNS pods", func() (bool, string) {
		pods := readyPods(ctx, admin, "k8s-app=kube-dns")
		return len(pods) == 2, describePods(pods)
	})
	before := image()

	// A new CoreDNS image: the Manifest is re-rendered, the Deployment stays as it was.
	const newImage = "registry.k8s.io/coredns/coredns:v1.12.9"
	if before == newImage {
		t.Fatalf("CoreDNS runs %s already", before)
	}
	if _, err := talos.ApplyConfiguration(tctx, &machine.ApplyConfigurationRequest{
		Data: simtest.Patched(t, cpConfig, "cluster:\n  coreDNS:\n    image: "+newImage+"\n"),
		Mode: machine.ApplyConfigurationRequest_NO_REBOOT,
	}); err != nil {
		t.Fatal(err)
	}
	within(t, "the Manifest re-rendered", func() (bool, string) {
		m, err := safe.StateGetByID[*k8s.Manifest](tctx, talos.COSI, "11-core-dns")
		if err != nil {
			return false, err.Error()
		}
		for _, item := range m.TypedSpec().Items {
			if item.Object["kind"] == "Deployment" {
				got := item.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]
				return got == newImage, got.(string)
			}
		}
		return false, "no Deployment"
	})
	rounds := cluster.Trust.PodRounds()
	within(t, "a few pod rounds", func() (bool, string) { return cluster.Trust.PodRounds() > rounds+5, "" })
	if got := image(); got != before {
		t.Errorf("Talos updated the existing CoreDNS Deployment to %s; it only creates", got)
	}

	// A change of the Deployment's spec moves its generation; the status follows.
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"coredns","image":"` + newImage + `"}]}}}}`)
	d, err := admin.AppsV1().Deployments("kube-system").Patch(ctx, "coredns", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	within(t, "the new generation observed", func() (bool, string) {
		got, err := admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return got.Status.ObservedGeneration == d.Generation && got.Status.UpdatedReplicas == 2, got.Status.String()
	})
	within(t, "CoreDNS pods of the new image", func() (bool, string) {
		pods := readyPods(ctx, admin, "k8s-app=kube-dns")
		return len(pods) == 2 && pods[0].Spec.Containers[0].Image == newImage && pods[1].Spec.Containers[0].Image == newImage, describePods(pods)
	})

	// A new kube-proxy image (as upgrade-k8s' sync applies it): each Node's pod is replaced.
	const newProxy = "registry.k8s.io/kube-proxy:v1.35.1"
	patch = []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"kube-proxy","image":"` + newProxy + `"}]}}}}`)
	if _, err := admin.AppsV1().DaemonSets("kube-system").Patch(ctx, "kube-proxy", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, "kube-proxy pods of the new image on each Node", func() (bool, string) {
		pods := readyPods(ctx, admin, "k8s-app=kube-proxy")
		return len(pods) == 2 && pods[0].Spec.NodeName != pods[1].Spec.NodeName &&
			pods[0].Spec.Containers[0].Image == newProxy && pods[1].Spec.Containers[0].Image == newProxy, describePods(pods)
	})
	within(t, "the DaemonSet's status counts them", func() (bool, string) {
		ds, err := admin.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ds.Status.ObservedGeneration == ds.Generation && ds.Status.UpdatedNumberScheduled == 2 && ds.Status.NumberReady == 2, ds.Status.String()
	})
}

// readyPods are the kube-system pods of the selector that are Ready and not being deleted.
func readyPods(ctx context.Context, admin *kubernetes.Clientset, selector string) []corev1.Pod {
	list, err := admin.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		}) {
			out = append(out, p)
		}
	}
	return out
}

func describePods(pods []corev1.Pod) string {
	var parts []string
	for _, p := range pods {
		parts = append(parts, p.Name+"@"+p.Spec.NodeName+":"+p.Spec.Containers[0].Image)
	}
	return strings.Join(parts, ", ")
}
