package rollout_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	simnode "talos-cluster/sim/node"
	"talos-cluster/talosnode/rollout"
)

// kinds are the timeline entries of the given kinds after mark, as "node:kind".
func (c *realCluster) kinds(mark int, kinds ...string) []string {
	var out []string
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if slices.Contains(kinds, e.Event) {
			out = append(out, c.name(e.Node)+":"+e.Event)
		}
	}
	return out
}

func (c *realCluster) name(address string) string {
	for _, n := range c.nodes {
		if strings.Split(n.Target.Address, ":")[0] == address {
			return n.Target.Name
		}
	}
	return address
}

// awaitMaintenance waits until a reset machine is back up in maintenance mode.
func (c *realCluster) awaitMaintenance(t *testing.T, n *simnode.Node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s := n.State(); !s.Up || s.Configured || s.Stage != "maintenance"; s = n.State() {
		if time.Now().After(deadline) {
			t.Fatalf("%s after its reset: up %t, configured %t, stage %s; want maintenance mode", n.Addr(), s.Up, s.Configured, s.Stage)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A worker that answers leaves through the Kubernetes API (cordon, a drain its budget paces),
// then Talos' graceful reset wipes it into maintenance mode and its Node is deleted; a rerun has
// nothing left to do.
func TestARemovedWorkerIsDrainedResetIntoMaintenanceAndItsNodeDeleted(t *testing.T) {
	c := newRealCluster(t, 44)
	c.waitKubernetes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k, base := c.admin(t, ctx)
	app := newWebApp(t, ctx, k, base)
	app.budget(t, ctx, 1, 1)
	cctx, stop := context.WithCancel(ctx)
	wait := app.controllers(cctx)
	defer func() { stop(); wait() }()

	leaving := c.nodes[3]
	leaving.Leaving = true
	declared := append(slices.Clone(c.nodes[:3]), leaving)
	mark := len(c.lab.Trust.Timeline())
	var log logLines
	result, err := rollout.Run(ctx, declared, c.options(t, log.add))
	if err != nil {
		t.Fatalf("rollout: %v\n%s", err, log.text())
	}
	if len(result.Changes) != 1 || !strings.HasPrefix(result.Changes[0], "worker-1: removed (cordon, drain") {
		t.Errorf("changes %q", result.Changes)
	}
	if _, err := k.Send(ctx, base, http.MethodGet, "/api/v1/nodes/worker-1", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Node worker-1 after the removal: %v, want not found", err)
	}
	c.awaitMaintenance(t, c.sim[3])
	// The rollout drained it before the reset: Talos' own drain found nothing left to evict.
	got := c.kinds(mark, simnode.TimelineReset, simnode.TimelineDrain, simnode.TimelineWipe, simnode.TimelineDown, simnode.TimelineApply, simnode.TimelineUpgrade)
	if want := []string{"worker-1:reset", "worker-1:drain", "worker-1:wipe", "worker-1:down"}; !slices.Equal(got[:min(len(got), 4)], want) {
		t.Errorf("timeline %v, want %v first and no other node touched", got, want)
	}
	for _, e := range got[4:] {
		if !strings.HasPrefix(e, "worker-1:") {
			t.Errorf("another node touched: %v", got)
		}
	}
	for _, e := range c.lab.Trust.Timeline()[mark:] {
		if e.Event == simnode.TimelineDrain && !strings.HasSuffix(e.Detail, "evicted ") {
			t.Errorf("Talos' drain still found pods to evict: %s", e.Detail)
		}
	}
	text := log.text()
	for _, name := range []string{"web-1", "web-2"} {
		if !strings.Contains(text, "evicted default/"+name) {
			t.Errorf("no eviction of %s in the log:\n%s", name, text)
		}
	}
	if i, j := strings.Index(text, "evicted default/"), strings.Index(text, "worker-1 ("+leaving.Target.Address+"): reset"); i < 0 || j < 0 || i > j {
		t.Errorf("the drain did not come before the reset:\n%s", text)
	}
	if got := app.pods(t, ctx); len(got["worker-1"]) != 0 || len(got["cp-2"]) != 2 {
		t.Errorf("running pods %v, want the two replacements on cp-2", got)
	}
	if !strings.Contains(text, "refused by PodDisruptionBudget default/web") {
		t.Errorf("the budget did not pace the drain:\n%s", text)
	}

	// The stack no longer records worker-1: a rerun over what it declares changes nothing.
	mark = len(c.lab.Trust.Timeline())
	result, err = rollout.Run(ctx, slices.Clone(c.nodes[:3]), c.options(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Changes) != 0 {
		t.Errorf("rerun changes %q", result.Changes)
	}
	if got := c.kinds(mark, simnode.TimelineReset, simnode.TimelineApply, simnode.TimelineUpgrade, simnode.TimelineDown, simnode.TimelineEtcdLeave); len(got) > 0 {
		t.Errorf("rerun touched %v", got)
	}
}
