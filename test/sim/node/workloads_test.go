package node

import (
	"maps"
	"slices"
	"testing"
)

// A Deployment's pods go round-robin to Ready, schedulable Nodes; an evicted pod is replaced on
// another Node under a new name; a pod of an old template or of a gone Node is deleted.
func TestPlanDeploymentPlacesReplacesAndDeletes(t *testing.T) {
	nodes := []clusterNode{{"cp-1", true}, {"w-1", false}, {"w-2", true}}
	plan := planDeployment("coredns", 2, nodes, nil, "h1")
	if got := plan.create; !maps.Equal(got, map[string]string{"coredns-0": "cp-1", "coredns-1": "w-2"}) {
		t.Errorf("first pass creates %v", got)
	}
	// coredns-1 evicted from w-2 (terminating), which is now cordoned.
	nodes[2].schedulable = false
	pods := []podView{{name: "coredns-0", node: "cp-1", hash: "h1", ready: true}, {name: "coredns-1", node: "w-2", hash: "h1", terminating: true}}
	plan = planDeployment("coredns", 2, nodes, pods, "h1")
	if !maps.Equal(plan.create, map[string]string{"coredns-2": "cp-1"}) || plan.live != 2 || plan.ready != 1 {
		t.Errorf("after an eviction: %+v", plan)
	}
	// A new template and a gone Node.
	pods = []podView{{name: "coredns-0", node: "cp-1", hash: "h1", ready: true}, {name: "coredns-2", node: "gone", hash: "h1", ready: true}}
	plan = planDeployment("coredns", 2, nodes, pods, "h2")
	if !slices.Equal(plan.remove, []string{"coredns-0"}) || !slices.Equal(plan.force, []string{"coredns-2"}) || len(plan.create) != 2 || plan.ready != 0 {
		t.Errorf("new template: %+v", plan)
	}
	// No Node can take a replica: status.replicas still counts it, so a rollout wait goes on.
	plan = planDeployment("coredns", 2, []clusterNode{{"w-1", false}}, nil, "h1")
	if len(plan.create) != 0 || plan.unplaced != 2 {
		t.Errorf("no schedulable Node: %+v", plan)
	}
	if s := deploymentStatus(1, 2, plan); s.Replicas != 2 || s.ReadyReplicas != 0 {
		t.Errorf("status without a Node: %+v", s)
	}
}

// A DaemonSet has a pod on every Node, cordoned or not; a pod of an old template is deleted, and
// its Node's new pod waits until the old one's name is free.
func TestPlanDaemonSetOnePodPerNode(t *testing.T) {
	nodes := []clusterNode{{"cp-1", true}, {"w-1", false}}
	plan := planDaemonSet("kube-proxy", nodes, nil, "h1")
	if !maps.Equal(plan.create, map[string]string{"kube-proxy-cp-1": "cp-1", "kube-proxy-w-1": "w-1"}) {
		t.Errorf("first pass creates %v", plan.create)
	}
	pods := []podView{{name: "kube-proxy-cp-1", node: "cp-1", hash: "h1", ready: true}, {name: "kube-proxy-w-1", node: "w-1", hash: "h2", ready: true}, {name: "kube-proxy-w-9", node: "w-9", hash: "h2"}}
	plan = planDaemonSet("kube-proxy", nodes, pods, "h2")
	if !slices.Equal(plan.remove, []string{"kube-proxy-cp-1"}) || !slices.Equal(plan.force, []string{"kube-proxy-w-9"}) || len(plan.create) != 0 ||
		plan.updated != 1 || plan.ready != 1 {
		t.Errorf("new template: %+v", plan)
	}
}
