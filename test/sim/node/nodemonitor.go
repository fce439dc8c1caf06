package node

import (
	"fmt"
	"log"
	"net/http"
	"time"
)

// The simulation runs no kube-controller-manager, so its node lifecycle controller's part that
// matters here is played by the kubelets' loop (pods.go): a Node whose kubelet has not been heard
// from for the node-monitor grace period (kube-controller-manager --node-monitor-grace-period,
// 40 s by default) gets its Ready condition set to Unknown, reason NodeStatusUnknown, "Kubelet
// stopped posting node status." (pkg/controller/nodelifecycle). A kubelet stops when its machine
// is down, its services are stopped (upgrade, reset) or it has no config (reset to maintenance).
// When the kubelet runs again it posts Ready True. Only with a real API server: the in-memory
// model keeps no conditions.

// DefaultNodeMonitorGracePeriod is kube-controller-manager's --node-monitor-grace-period.
const DefaultNodeMonitorGracePeriod = 40 * time.Second

// SetNodeMonitorGracePeriod sets how long a Node's kubelet may be silent before its Ready
// condition turns Unknown.
func (t *Trust) SetNodeMonitorGracePeriod(d time.Duration) {
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	t.nodeMonitorGrace = d
}

// nodeMonitorEvery is how many pod rounds pass between two looks at the Nodes.
const nodeMonitorEvery = 3

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type              string `json:"type"`
				Status            string `json:"status"`
				LastHeartbeatTime string `json:"lastHeartbeatTime"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// monitorNodes is one look of the node lifecycle controller at the cluster's Nodes; alive are the
// members whose kubelets run, by Node name. heartbeats (owned by the cluster's pod loop) is when
// each Node's kubelet was last seen running.
func (t *Trust) monitorNodes(api *realAPI, alive map[string]member, heartbeats map[string]time.Time) {
	if !api.isReady() {
		return
	}
	t.clusterMu.Lock()
	grace := t.nodeMonitorGrace
	t.clusterMu.Unlock()
	var nodes nodeList
	if err := api.admin.do(http.MethodGet, "/api/v1/nodes", nil, &nodes); err != nil {
		log.Printf("cluster %s: node monitor: %v", api.cluster, err)
		return
	}
	now := time.Now()
	for _, node := range nodes.Items {
		name := node.Metadata.Name
		ready, heartbeat := "", ""
		for _, c := range node.Status.Conditions {
			if c.Type == "Ready" {
				ready, heartbeat = c.Status, c.LastHeartbeatTime
			}
		}
		if m, ok := alive[name]; ok {
			heartbeats[name] = now
			if ready != "True" {
				// The kubelet posts its status again (every nodeStatusUpdateFrequency).
				if kubelet, err := api.kubelet(name); err == nil {
					if err := kubelet.do(http.MethodPatch, "/api/v1/nodes/"+name+"/status", kubeletStatus(name, m), nil); err != nil {
						log.Printf("node %s: kubelet status: %v", m.node.address, err)
					}
				}
			}
			continue
		}
		last, seen := heartbeats[name]
		if !seen {
			heartbeats[name] = now
			continue
		}
		if ready == "Unknown" || now.Sub(last) < grace {
			continue
		}
		stamp := now.UTC().Format(time.RFC3339)
		if heartbeat == "" {
			heartbeat = stamp
		}
		patch := map[string]any{"status": map[string]any{"conditions": []map[string]any{{
			"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
			"lastHeartbeatTime": heartbeat, "lastTransitionTime": stamp,
		}}}}
		if err := api.admin.do(http.MethodPatch, "/api/v1/nodes/"+name+"/status", patch, nil); err != nil {
			log.Printf("cluster %s: node monitor: Node %s: %v", api.cluster, name, err)
			continue
		}
		t.record(name, TimelineNodeNotReady, fmt.Sprintf("Node %s: Ready Unknown, its kubelet silent for %s", name, now.Sub(last).Round(time.Millisecond)))
	}
}
