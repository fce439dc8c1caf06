package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	simnode "talos-cluster/sim/node"
	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/rollout"
)

// admin is the cluster's admin client (the Kubeconfig RPC's, as the rollout gets it) and cp-1's
// own API server.
func (c *realCluster) admin(t *testing.T, ctx context.Context) (*kube.Client, string) {
	t.Helper()
	tc, err := node.Dial(ctx, c.nodes[0].Target, node.Credentials(c.lab.Credentials))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close() //nolint:errcheck
	data, err := tc.Kubeconfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kube.New(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return k, "https://" + strings.Split(c.nodes[0].Target.Address, ":")[0] + ":6443"
}

// webApp is two pods of one app bound to worker-1, owned by a ReplicaSet, as a Deployment would
// leave them (no scheduler or controller runs here: the pods are bound and the test stands in for
// the controllers).
type webApp struct {
	k    *kube.Client
	base string
	rs   map[string]any
}

const pdbPath = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web"

func (w *webApp) send(t *testing.T, ctx context.Context, method, path string, body any) map[string]any {
	t.Helper()
	data, err := w.k.Send(ctx, w.base, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (w *webApp) pod(name, nodeName string) map[string]any {
	meta := w.rs["metadata"].(map[string]any)
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"name": name, "namespace": "default", "labels": map[string]string{"app": "web"},
			"ownerReferences": []map[string]any{{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": meta["uid"], "controller": true}},
		},
		"spec": map[string]any{"nodeName": nodeName, "containers": []map[string]any{{"name": "web", "image": "nginx"}}},
	}
}

func newWebApp(t *testing.T, ctx context.Context, k *kube.Client, base string) *webApp {
	t.Helper()
	w := &webApp{k: k, base: base}
	template := map[string]any{
		"metadata": map[string]any{"labels": map[string]string{"app": "web"}},
		"spec":     map[string]any{"containers": []map[string]any{{"name": "web", "image": "nginx"}}},
	}
	w.rs = w.send(t, ctx, http.MethodPost, "/apis/apps/v1/namespaces/default/replicasets", map[string]any{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"metadata": map[string]any{"name": "web", "namespace": "default"},
		"spec":     map[string]any{"replicas": 2, "selector": map[string]any{"matchLabels": map[string]string{"app": "web"}}, "template": template},
	})
	for _, name := range []string{"web-1", "web-2"} {
		w.send(t, ctx, http.MethodPost, "/api/v1/namespaces/default/pods", w.pod(name, "worker-1"))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		running := w.pods(t, ctx)
		if len(running["worker-1"]) == 2 {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("web-1 and web-2 not Running and Ready on worker-1 within a minute: %v", running)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pods are the app's pods Running and Ready, by node.
func (w *webApp) pods(t *testing.T, ctx context.Context) map[string][]string {
	t.Helper()
	list := w.send(t, ctx, http.MethodGet, "/api/v1/namespaces/default/pods?labelSelector="+url.QueryEscape("app=web"), nil)
	out := map[string][]string{}
	for _, item := range list["items"].([]any) {
		p := podOf(item)
		if p.ready && !p.terminating {
			out[p.node] = append(out[p.node], p.name)
		}
	}
	return out
}

type podView struct {
	name, node         string
	ready, terminating bool
}

func podOf(item any) podView {
	data, _ := json.Marshal(item)
	var p struct {
		Metadata struct {
			Name              string  `json:"name"`
			DeletionTimestamp *string `json:"deletionTimestamp"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			Conditions []struct{ Type, Status string } `json:"conditions"`
		} `json:"status"`
	}
	_ = json.Unmarshal(data, &p)
	v := podView{name: p.Metadata.Name, node: p.Spec.NodeName, terminating: p.Metadata.DeletionTimestamp != nil}
	for _, c := range p.Status.Conditions {
		v.ready = v.ready || (c.Type == "Ready" && c.Status == "True")
	}
	return v
}

// budget creates the app's PodDisruptionBudget with the status the disruption controller would
// give it (which does not run here: without a status whose observedGeneration is the budget's
// generation, the API server refuses every eviction as "still being processed").
func (w *webApp) budget(t *testing.T, ctx context.Context, minAvailable, allowed int) {
	t.Helper()
	pdb := w.send(t, ctx, http.MethodPost, "/apis/policy/v1/namespaces/default/poddisruptionbudgets", map[string]any{
		"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
		"metadata": map[string]any{"name": "web", "namespace": "default"},
		"spec":     map[string]any{"minAvailable": minAvailable, "selector": map[string]any{"matchLabels": map[string]string{"app": "web"}}},
	})
	pdb["status"] = map[string]any{
		"observedGeneration": pdb["metadata"].(map[string]any)["generation"], "disruptionsAllowed": allowed,
		"currentHealthy": 2, "desiredHealthy": minAvailable, "expectedPods": 2,
	}
	w.send(t, ctx, http.MethodPut, pdbPath+"/status", pdb)
}

// controllers stands in, until ctx ends, for the ReplicaSet controller (a pod of the two that is
// being deleted is replaced by a new one on cp-2; the scheduler would avoid the cordoned node) and
// the disruption controller (the budget's status from the healthy pods, not counting those the
// API server listed as disrupted, written against the resourceVersion read so that an eviction in
// between makes it a conflict).
func (w *webApp) controllers(ctx context.Context) func() {
	var wg sync.WaitGroup
	wg.Go(func() {
		made := 0
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			data, err := w.k.Send(ctx, w.base, http.MethodGet, pdbPath, nil)
			if err != nil {
				continue
			}
			var pdb map[string]any
			if json.Unmarshal(data, &pdb) != nil {
				continue
			}
			data, err = w.k.Send(ctx, w.base, http.MethodGet, "/api/v1/namespaces/default/pods?labelSelector="+url.QueryEscape("app=web"), nil)
			if err != nil {
				continue
			}
			var list struct{ Items []any }
			if json.Unmarshal(data, &list) != nil {
				continue
			}
			status, _ := pdb["status"].(map[string]any)
			disrupted, _ := status["disruptedPods"].(map[string]any)
			live, healthy, names := 0, 0, map[string]bool{}
			for _, item := range list.Items {
				p := podOf(item)
				names[p.name] = true
				if p.terminating {
					continue
				}
				live++
				if _, gone := disrupted[p.name]; p.ready && !gone {
					healthy++
				}
			}
			for ; live < 2; live++ {
				made++
				_, _ = w.k.Send(ctx, w.base, http.MethodPost, "/api/v1/namespaces/default/pods", w.pod(fmt.Sprintf("web-r%d", made), "cp-2"))
			}
			for name := range disrupted {
				if !names[name] {
					delete(disrupted, name)
				}
			}
			spec := pdb["spec"].(map[string]any)
			minAvailable := int(spec["minAvailable"].(float64))
			pdb["status"] = map[string]any{
				"observedGeneration": pdb["metadata"].(map[string]any)["generation"], "disruptionsAllowed": max(0, healthy-minAvailable),
				"currentHealthy": healthy, "desiredHealthy": minAvailable, "expectedPods": 2, "disruptedPods": disrupted,
			}
			_, _ = w.k.Send(ctx, w.base, http.MethodPut, pdbPath+"/status", pdb)
		}
	})
	return wg.Wait
}

func (w *webApp) unschedulable(t *testing.T, ctx context.Context) bool {
	t.Helper()
	n := w.send(t, ctx, http.MethodGet, "/api/v1/nodes/worker-1", nil)
	u, _ := n["spec"].(map[string]any)["unschedulable"].(bool)
	return u
}

func TestARebootClassConfigChangeDrainsTheNodeHonouringItsPodDisruptionBudget(t *testing.T) {
	c := newRealCluster(t, 43)
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k, base := c.admin(t, ctx)
	app := newWebApp(t, ctx, k, base)
	worker := c.sim[3]
	workerIP := strings.Split(c.nodes[3].Target.Address, ":")[0]

	// machine.env cannot change in place: Talos reboots worker-1 to apply it.
	declared := slices.Clone(c.nodes)
	declared[3].Config = addPatch(t, c.nodes[3].Config, "machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n")
	reboots := func(mark int) int {
		n := 0
		for _, e := range c.lab.Trust.Timeline()[mark:] {
			if e.Node == workerIP && e.Event == simnode.TimelineDown {
				n++
			}
		}
		return n
	}

	t.Run("a budget that allows no disruption stops the rollout before the apply, naming it", func(t *testing.T) {
		app.budget(t, ctx, 2, 0)
		applies, boot, mark := worker.State().Applies, worker.State().BootID, len(c.lab.Trust.Timeline())
		var log logLines
		opts := c.options(t, log.add)
		opts.DrainTimeout = 2 * time.Second
		_, err := rollout.Run(ctx, declared, opts)
		var rerr *rollout.Error
		if !errors.As(err, &rerr) || rerr.Node.Name != "worker-1" || rerr.Phase != rollout.Drain {
			t.Fatalf("rollout error %v, want worker-1 in phase %q\n%s", err, rollout.Drain, log.text())
		}
		for _, want := range []string{"PodDisruptionBudget default/web", "needs 2 healthy pods", "2 pods left", "default/web-1", "default/web-2", "uncordoned again"} {
			if !strings.Contains(rerr.Seen, want) {
				t.Errorf("the error does not say %q: %s", want, rerr.Seen)
			}
		}
		if !strings.Contains(log.text(), "eviction of default/web-1, default/web-2 refused by PodDisruptionBudget default/web") {
			t.Errorf("the log does not name the budget that blocks:\n%s", log.text())
		}
		if s := worker.State(); s.Applies != applies || s.BootID != boot || reboots(mark) != 0 {
			t.Errorf("worker-1 was changed: applies %d -> %d, boot %s -> %s, %d reboots", applies, s.Applies, boot, s.BootID, reboots(mark))
		}
		if app.unschedulable(t, ctx) {
			t.Error("worker-1 left cordoned after a drain that stopped the rollout before any change")
		}
		if got := app.pods(t, ctx)["worker-1"]; len(got) != 2 {
			t.Errorf("pods on worker-1 %v, want both still running", got)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("with the budget's one disruption, the Node is cordoned, drained, rebooted once and uncordoned", func(t *testing.T) {
		app.send(t, ctx, http.MethodPatch, pdbPath, map[string]any{"spec": map[string]any{"minAvailable": 1}})
		cctx, stop := context.WithCancel(ctx)
		wait := app.controllers(cctx)
		defer func() { stop(); wait() }()
		deadline := time.Now().Add(time.Minute)
		for {
			pdb := app.send(t, ctx, http.MethodGet, pdbPath, nil)
			status, _ := pdb["status"].(map[string]any)
			if status["observedGeneration"] == pdb["metadata"].(map[string]any)["generation"] && status["disruptionsAllowed"] == float64(1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the stand-in disruption controller did not observe the new budget within a minute: %v", status)
			}
			time.Sleep(50 * time.Millisecond)
		}
		applies, mark := len(worker.State().KubeAtApply), len(c.lab.Trust.Timeline())
		var log logLines
		if _, err := rollout.Run(ctx, declared, c.options(t, log.add)); err != nil {
			t.Fatalf("rollout: %v\n%s", err, log.text())
		}
		atApply := worker.State().KubeAtApply[applies:]
		if len(atApply) != 1 || !atApply[0].Unschedulable || len(atApply[0].Pods) != 0 {
			t.Errorf("worker-1 at its applies: %+v, want one apply with its Node cordoned and no pods left", atApply)
		}
		if n := reboots(mark); n != 1 {
			t.Errorf("worker-1 rebooted %d times, want once", n)
		}
		if app.unschedulable(t, ctx) {
			t.Error("worker-1 still cordoned after its turn")
		}
		for _, name := range []string{"web-1", "web-2"} {
			if !strings.Contains(log.text(), "evicted default/"+name) {
				t.Errorf("no eviction of %s in the log:\n%s", name, log.text())
			}
			if _, err := k.Send(ctx, base, http.MethodGet, "/api/v1/namespaces/default/pods/"+name, nil); err == nil {
				t.Errorf("%s still exists after the drain", name)
			}
		}
		// The second eviction waits for the first pod's replacement: the budget allows one at a time.
		// Kubernetes 1.37 words the refusal by the budget's status: "needs 1 healthy pods" once the
		// disruption controller recounted, "does not allow evicting pods currently" before.
		if !regexp.MustCompile(`eviction of default/web-[12] refused by PodDisruptionBudget default/web \(The disruption budget web (needs 1 healthy pods|does not allow evicting pods currently)`).MatchString(log.text()) {
			t.Errorf("the log does not show the budget holding the second eviction:\n%s", log.text())
		}
		if got := app.pods(t, ctx); len(got["worker-1"]) != 0 || len(got["cp-2"]) != 2 {
			t.Errorf("running pods %v, want the two replacements on cp-2", got)
		}
	})
}
