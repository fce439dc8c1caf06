package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

// The kubelet mirrors each static pod into the API server: a Pod in kube-system named
// <component>-<node>, bound to the node, with Talos' labels and the talos.dev/config-version
// annotation of the config it runs (control_plane_static_pod.go), and the pod's status. When the
// static pod changes, the kubelet deletes the mirror pod and creates the new one; it posts the
// status as it changes. All of it with the kubelet's own credentials, which the Node authorizer
// and NodeRestriction allow for mirror pods bound to that node.

const annotationConfigVersion = "talos.dev/config-version"

// mirrorKey is what was last written for one mirror pod.
type mirrorKey struct {
	version string
	ready   bool
}

// syncMirrorPods brings the node's mirror pods to its static pods as they run now.
func (api *realAPI) syncMirrorPods(kubelet *kubeClient, name, nodeUID string, m member) error {
	var listed *boundPods
	for _, pod := range m.node.mirrorPods() {
		podName := pod.component + "-" + name
		want := mirrorKey{version: pod.version, ready: pod.ready}
		api.mu.Lock()
		last, known := api.mirrors[podName]
		api.mu.Unlock()
		if known && last == want {
			continue
		}
		if listed == nil {
			listed = &boundPods{}
			if err := kubelet.do(http.MethodGet, "/api/v1/pods?fieldSelector=spec.nodeName%3D"+name, nil, listed); err != nil {
				return fmt.Errorf("listing the pods of %s: %w", name, err)
			}
		}
		path := "/api/v1/namespaces/kube-system/pods/" + podName
		exists, current := false, false
		for _, p := range listed.Items {
			if p.Metadata.Namespace == "kube-system" && p.Metadata.Name == podName {
				exists, current = true, p.Metadata.Annotations[annotationConfigVersion] == pod.version
			}
		}
		var err error
		switch {
		case !exists:
			err = kubelet.do(http.MethodPost, "/api/v1/namespaces/kube-system/pods", mirrorPodObject(podName, name, nodeUID, pod), nil)
		case !current:
			if err = kubelet.do(http.MethodDelete, path, map[string]any{"gracePeriodSeconds": 0}, nil); err == nil || isNotFound(err) {
				err = kubelet.do(http.MethodPost, "/api/v1/namespaces/kube-system/pods", mirrorPodObject(podName, name, nodeUID, pod), nil)
			}
		}
		if err != nil {
			return fmt.Errorf("mirror pod %s: %w", podName, err)
		}
		if err := kubelet.do(http.MethodPatch, path+"/status", mirrorPodStatus(m, pod), nil); err != nil {
			return fmt.Errorf("mirror pod %s status: %w", podName, err)
		}
		api.mu.Lock()
		api.mirrors[podName] = want
		api.mu.Unlock()
	}
	return nil
}

func mirrorPodObject(podName, nodeName, nodeUID string, pod mirrorPod) map[string]any {
	sum := sha256.Sum256([]byte(pod.component + pod.version + pod.image))
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"name": podName, "namespace": "kube-system",
			"labels": map[string]string{
				"tier": "control-plane", "k8s-app": pod.component, "component": pod.component,
				"app.kubernetes.io/managed-by": "Talos",
			},
			"annotations": map[string]string{
				annotationConfigVersion:       pod.version,
				"kubernetes.io/config.mirror": hex.EncodeToString(sum[:16]),
				"kubernetes.io/config.source": "file",
			},
			// NodeRestriction: a mirror pod is owned by its Node.
			"ownerReferences": []map[string]any{{"apiVersion": "v1", "kind": "Node", "name": nodeName, "uid": nodeUID, "controller": true}},
		},
		"spec": map[string]any{
			"nodeName":    nodeName,
			"hostNetwork": true,
			"containers":  []map[string]any{{"name": pod.component, "image": pod.image}},
		},
	}
}

func mirrorPodStatus(m member, pod mirrorPod) map[string]any {
	ready := "False"
	if pod.ready {
		ready = "True"
	}
	now := time.Now().UTC().Format(time.RFC3339)
	address := m.node.address.String()
	return map[string]any{"status": map[string]any{
		"phase":   "Running",
		"hostIP":  address,
		"hostIPs": []map[string]string{{"ip": address}},
		"podIP":   address,
		"podIPs":  []map[string]string{{"ip": address}},
		"conditions": []map[string]any{
			{"type": "Ready", "status": ready, "lastTransitionTime": now},
			{"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
		},
		"startTime": now,
	}}
}
