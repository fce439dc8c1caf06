package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// corednsImage is the image of the CoreDNS Deployment in the cluster, "" while there is none.
func corednsImage(t *testing.T, ctx context.Context, c *realCluster) string {
	t.Helper()
	k, base := c.admin(t, ctx)
	data, err := k.Send(ctx, base, http.MethodGet, "/apis/apps/v1/namespaces/kube-system/deployments/coredns", nil)
	if err != nil {
		return ""
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Image string `json:"image"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(data, &d); err != nil || len(d.Spec.Template.Spec.Containers) == 0 {
		t.Fatalf("coredns Deployment: %v %s", err, data)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// Talos creates the bootstrap manifests once and never updates them; a new CoreDNS image in the
// config reaches the cluster through the run's final manifest sync, which deletes nothing, and a
// second sync has nothing to do.
func TestTheManifestSyncUpdatesCoreDNSAndDeletesNothing(t *testing.T) {
	// Talos 1.11 (the lab's release) takes talosctl's legacy sync, which does not tell updates apart.
	t.Run("Talos 1.11: legacy sync", func(t *testing.T) {
		manifestSync(t, newRealCluster(t, 33), "cluster:\n  coreDNS:\n    image: %s\n", "synced")
	})
	// Talos 1.13+ takes the server-side apply against Talos' inventory.
	t.Run("Talos 1.14: server-side apply", func(t *testing.T) {
		// The 1.14 contract keeps CoreDNS' settings in their own document.
		manifestSync(t, newRealClusterOf(t, 33, 21, config.TalosVersion1_14, "v1.14.1"), "apiVersion: v1alpha1\nkind: KubeCoreDNSConfig\nimage: %s\n", "updated")
	})
}

// manifestSync changes the CoreDNS image of c's control planes with the patch (a format of the
// image) and expects the sync to log verb for the Deployment.
func manifestSync(t *testing.T, c *realCluster, patch, verb string) {
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	deadline := time.Now().Add(time.Minute)
	old := corednsImage(t, ctx, c)
	for ; old == ""; old = corednsImage(t, ctx, c) {
		if time.Now().After(deadline) {
			t.Fatal("Talos never created the CoreDNS Deployment")
		}
		time.Sleep(200 * time.Millisecond)
	}
	k, base := c.admin(t, ctx)
	handMade := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "hand-made", "namespace": "kube-system"}}
	if _, err := k.Send(ctx, base, http.MethodPost, "/api/v1/namespaces/kube-system/configmaps", handMade); err != nil {
		t.Fatal(err)
	}

	const image = "registry.k8s.io/coredns/coredns:v1.12.9"
	if old == image {
		t.Fatalf("the CoreDNS image is %s already", old)
	}
	var log logLines
	declared := slices.Clone(c.nodes)
	for i := range declared {
		if declared[i].ControlPlane {
			declared[i].Config = addPatch(t, declared[i].Config, fmt.Sprintf(patch, image))
		}
	}
	if _, err := rollout.Run(ctx, declared, c.options(t, log.add)); err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	if got := corednsImage(t, ctx, c); got != image {
		t.Errorf("CoreDNS runs %s after the sync, want %s\n%s", got, image, log.text())
	}
	if !strings.Contains(log.text(), "manifest sync: "+verb+" apps/v1 Deployment kube-system/coredns") {
		t.Errorf("the log does not name the updated Deployment:\n%s", log.text())
	}
	if _, err := k.Send(ctx, base, http.MethodGet, "/api/v1/namespaces/kube-system/configmaps/hand-made", nil); err != nil {
		t.Errorf("the hand-made ConfigMap after the sync: %v", err)
	}

	creds := node.Credentials(c.lab.Credentials)
	tc, err := node.Dial(ctx, c.nodes[0].Target, creds)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := tc.Kubeconfig(ctx)
	tc.Close() //nolint:errcheck
	if err != nil {
		t.Fatal(err)
	}
	diff, err := rollout.DiffManifests(ctx, c.nodes[0].Target, creds, kubeconfig, c.nodes[0].TalosVersion)
	if err != nil || len(diff) != 0 {
		t.Errorf("diff after the sync: %q, %v; want nothing", diff, err)
	}
	var again []string
	if err := rollout.SyncManifests(ctx, c.nodes[0].Target, creds, kubeconfig, c.nodes[0].TalosVersion, func(s string) { again = append(again, s) }); err != nil || len(again) != 0 {
		t.Errorf("a second sync: %q, %v; want no change", again, err)
	}
}
