package node

import (
	"fmt"
	"log"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// With a real API server, each running machine's kubelet also looks after the ordinary pods bound
// to its Node (spec.nodeName), with its own credentials (the Node authorizer lets a kubelet list
// pods by spec.nodeName, patch the status of pods bound to it and delete them; NodeRestriction
// admits only pods bound to that node):
//   - a pod that is not yet Running and Ready is started: its status becomes phase Running with
//     the Ready and ContainersReady conditions (the kubelet's status manager, pkg/kubelet/status),
//     so the API server's eviction applies the PodDisruptionBudget to it (a Pending pod is
//     evicted without a PDB check, registry/core/pod/storage/eviction.go canIgnorePDB);
//   - a pod being deleted gracefully (deletionTimestamp set, as an eviction or a DELETE leaves it)
//     is stopped and then deleted for good with grace 0 and the pod's UID as precondition, as the
//     kubelet's status manager finishes a graceful deletion. Containers stop at once here: the
//     pod's terminationGracePeriodSeconds is not waited for.
//
// A machine that is down (rebooting, powered off) does nothing: its pods keep the status they
// had, and a pod evicted meanwhile stays terminating until the machine is back. Not modelled: the
// kubelet's graceful node shutdown (pods of a machine that reboots without a drain stay Running
// in the API server here, where a real kubelet marks them Failed), scheduling and controllers
// (the disruption controller that computes a PodDisruptionBudget's status): tests bind their own
// pods to nodes and set PDB status themselves; the pods of the bootstrap manifests' workloads are
// kept by workloads.go.

// podSyncInterval is how often each kubelet looks at its pods.
const podSyncInterval = 100 * time.Millisecond

// annotationMirror marks a mirror pod, which syncMirrorPods looks after.
const annotationMirror = "kubernetes.io/config.mirror"

// runPods is the kubelets' pod loop of one cluster, until its control plane stops.
func (t *Trust) runPods(api *realAPI) {
	tick := time.NewTicker(podSyncInterval)
	defer tick.Stop()
	heartbeats := map[string]time.Time{}
	for round := 0; ; round++ {
		select {
		case <-api.cancel:
			return
		case <-tick.C:
		}
		t.clusterMu.Lock()
		nodes := slices.Clone(t.nodes)
		t.clusterMu.Unlock()
		alive := map[string]member{}
		var running []member
		for _, n := range nodes {
			m := n.member()
			if m.cfg == nil || !m.up || m.cluster != api.cluster {
				continue
			}
			running = append(running, m)
			name := nodeName(m.hostname)
			if name == "" {
				continue
			}
			if !m.servicesStopped {
				alive[name] = m
			}
			if err := api.syncPods(name, m); err != nil {
				log.Printf("node %s: kubelet pods: %v", n.address, err)
			}
		}
		// The bootstrap manifests and the status of the workloads they hold (manifests.go).
		if api.isReady() {
			api.applyClusterManifests(running)
			if err := api.syncWorkloads(); err != nil {
				log.Printf("cluster %s: workload status: %v", api.cluster, err)
			}
		}
		if round%nodeMonitorEvery == 0 {
			t.monitorNodes(api, alive, heartbeats)
		}
		t.podRounds.Add(1)
	}
}

// PodRounds is how many rounds the kubelets' pod loops have made (every 100ms per cluster with a
// real API server), for a test to let rounds pass without a clock.
func (t *Trust) PodRounds() int64 { return t.podRounds.Load() }

// boundPods are the pods bound to a node as its kubelet lists them (the Node authorizer lets a
// kubelet list pods only with that field selector, and get only pods bound to it); the mirror-pod
// sync and the pod rounds both read them.
type boundPods struct {
	Items []struct {
		Metadata struct {
			Name              string            `json:"name"`
			Namespace         string            `json:"namespace"`
			UID               string            `json:"uid"`
			Annotations       map[string]string `json:"annotations"`
			DeletionTimestamp *string           `json:"deletionTimestamp"`
			OwnerReferences   []ownerReference  `json:"ownerReferences"`
		} `json:"metadata"`
		Spec struct {
			Containers []podContainer `json:"containers"`
		} `json:"spec"`
		Status struct {
			Phase      string         `json:"phase"`
			Conditions []podCondition `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

type ownerReference struct {
	Kind       string `json:"kind"`
	Controller bool   `json:"controller"`
}

type podContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type podCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// syncPods starts the node's new pods and finishes the deletion of those being deleted.
func (api *realAPI) syncPods(name string, m member) error {
	if !api.isReady() {
		return nil
	}
	kubelet, err := api.kubelet(name)
	if err != nil {
		return err
	}
	var pods boundPods
	if err := kubelet.do(http.MethodGet, "/api/v1/pods?fieldSelector="+url.QueryEscape("spec.nodeName="+name), nil, &pods); err != nil {
		return fmt.Errorf("listing the pods of %s: %w", name, err)
	}
	for _, p := range pods.Items {
		if _, mirror := p.Metadata.Annotations[annotationMirror]; mirror {
			continue
		}
		path := "/api/v1/namespaces/" + p.Metadata.Namespace + "/pods/" + p.Metadata.Name
		if p.Metadata.DeletionTimestamp != nil {
			opts := map[string]any{"gracePeriodSeconds": 0, "preconditions": map[string]string{"uid": p.Metadata.UID}}
			if err := kubelet.do(http.MethodDelete, path, opts, nil); err != nil && !isNotFound(err) {
				return fmt.Errorf("deleting pod %s/%s: %w", p.Metadata.Namespace, p.Metadata.Name, err)
			}
			continue
		}
		ready := slices.ContainsFunc(p.Status.Conditions, func(c podCondition) bool { return c.Type == "Ready" && c.Status == "True" })
		if p.Status.Phase == "Running" && ready {
			continue
		}
		if err := kubelet.do(http.MethodPatch, path+"/status", runningPodStatus(m, p.Spec.Containers), nil); err != nil && !isNotFound(err) {
			return fmt.Errorf("pod %s/%s status: %w", p.Metadata.Namespace, p.Metadata.Name, err)
		}
	}
	return nil
}

// runningPodStatus is the status a kubelet posts once a pod's containers run and are ready. Each
// container has a running state: talosctl health's pod check (v1.14.1 pkg/cluster/check/
// kubernetes.go K8sPodReadyAssertion) skips a pod none of whose containers is shown running.
func runningPodStatus(m member, containers []podContainer) map[string]any {
	now := time.Now().UTC().Format(time.RFC3339)
	address := m.node.address.String()
	statuses := make([]map[string]any, 0, len(containers))
	for _, c := range containers {
		statuses = append(statuses, map[string]any{"name": c.Name, "image": c.Image, "imageID": "", "ready": true, "started": true,
			"restartCount": 0, "state": map[string]any{"running": map[string]any{"startedAt": now}}})
	}
	return map[string]any{"status": map[string]any{
		"phase":   "Running",
		"hostIP":  address,
		"hostIPs": []map[string]string{{"ip": address}},
		"conditions": []map[string]any{
			{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
			{"type": "Initialized", "status": "True", "lastTransitionTime": now},
			{"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
			{"type": "Ready", "status": "True", "lastTransitionTime": now},
		},
		"containerStatuses": statuses,
		"startTime":         now,
	}}
}

// KubeAtApply is what the cluster's API server showed of a machine when a config apply reached it
// (recorded with a real API server only): whether its Node was cordoned, and the pods bound to it
// that a drain evicts, as namespace/name: not mirror pods nor a DaemonSet's (kube-proxy's, which
// stays on a drained Node as kubectl drain --ignore-daemonsets leaves it).
type KubeAtApply struct {
	Mode          string   `json:"mode"`
	Unschedulable bool     `json:"unschedulable"`
	Pods          []string `json:"pods"`
}

// kubeAtApply reads the machine's Node and pods from its cluster's real API server, nil without one.
func (t *Trust) kubeAtApply(n *Node) *KubeAtApply {
	m := n.member()
	t.clusterMu.Lock()
	api := t.realAPIs[m.cluster]
	t.clusterMu.Unlock()
	name := nodeName(m.hostname)
	if api == nil || !api.isReady() || name == "" {
		return nil
	}
	var node struct {
		Spec struct {
			Unschedulable bool `json:"unschedulable"`
		} `json:"spec"`
	}
	if err := api.admin.do(http.MethodGet, "/api/v1/nodes/"+name, nil, &node); err != nil {
		return nil
	}
	var pods boundPods
	if err := api.admin.do(http.MethodGet, "/api/v1/pods?fieldSelector="+url.QueryEscape("spec.nodeName="+name), nil, &pods); err != nil {
		return nil
	}
	out := &KubeAtApply{Unschedulable: node.Spec.Unschedulable, Pods: []string{}}
	for _, p := range pods.Items {
		_, mirror := p.Metadata.Annotations[annotationMirror]
		daemon := slices.ContainsFunc(p.Metadata.OwnerReferences, func(r ownerReference) bool { return r.Controller && r.Kind == "DaemonSet" })
		if !mirror && !daemon {
			out.Pods = append(out.Pods, p.Metadata.Namespace+"/"+p.Metadata.Name)
		}
	}
	return out
}
