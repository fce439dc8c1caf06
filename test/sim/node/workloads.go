package node

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The simulation runs no kube-controller-manager and no scheduler, so for the kube-system
// Deployments and DaemonSets Talos created from its bootstrap manifests (field manager "talos":
// CoreDNS, kube-proxy) syncWorkloads keeps the pods their controllers would, bound to Nodes as the
// scheduler would bind them, and writes the status those controllers would report:
//   - a DaemonSet has one pod per Node, <ds>-<node>, bound by spec.nodeName whether the Node is
//     cordoned or not (pkg/controller/daemon: a DaemonSet pod tolerates unschedulable Nodes);
//   - a Deployment has spec.replicas pods, <deploy>-<n>, placed round-robin (fewest of its pods
//     first) on Ready, schedulable Nodes; a pod being deleted (an eviction in a drain) is
//     replaced at once, elsewhere, as a ReplicaSet does. Its pods are owned by the Deployment
//     itself, not by a ReplicaSet as in a real cluster;
//   - a pod whose template hash (label pod-template-hash, as the Deployment controller's) is not
//     its owner's template's is deleted and replaced by one of the new template; all at once, not
//     at the pace of the rolling-update strategy;
//   - a pod bound to a Node that no longer exists is deleted at once (the pod garbage collector,
//     pkg/controller/podgc gcOrphaned).
//
// The kubelet model (pods.go) then starts the pods on machines that are up. Other kube-system
// workloads (a test's own) get only a status that says they are rolled out.

// labelTemplateHash marks the template a managed pod was made from.
const labelTemplateHash = "pod-template-hash"

// managedByTalos is whether the object was created or applied by Talos' manifest apply.
func managedByTalos(meta metav1.ObjectMeta) bool {
	return slices.ContainsFunc(meta.ManagedFields, func(f metav1.ManagedFieldsEntry) bool { return f.Manager == "talos" })
}

// templateHash names a pod template: it changes whenever the template does.
func templateHash(t corev1.PodTemplateSpec) string {
	data, _ := json.Marshal(t)
	h := fnv.New32a()
	_, _ = h.Write(data)
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

// podFor is the pod a controller makes of its owner's template, bound to node.
func podFor(name string, owner metav1.OwnerReference, t corev1.PodTemplateSpec, hash, node string) corev1.Pod {
	labels := map[string]string{labelTemplateHash: hash}
	for k, v := range t.Labels {
		labels[k] = v
	}
	controller := true
	owner.Controller, owner.BlockOwnerDeletion = &controller, &controller
	spec := *t.Spec.DeepCopy()
	spec.NodeName = node
	return corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Labels: labels, Annotations: t.Annotations, OwnerReferences: []metav1.OwnerReference{owner}},
		Spec:       spec,
	}
}

// clusterNode is what placement reads of a Node.
type clusterNode struct {
	name        string
	schedulable bool // Ready and not cordoned
}

// podView is what the controllers read of one of their pods.
type podView struct {
	name, node, hash string
	terminating      bool
	ready            bool
}

func viewPod(p corev1.Pod) podView {
	ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
	return podView{name: p.Name, node: p.Spec.NodeName, hash: p.Labels[labelTemplateHash], terminating: p.DeletionTimestamp != nil, ready: ready}
}

// workloadPlan is one controller pass over a workload: what to delete (force: the Node is gone),
// which pods to create on which Nodes, and the counts its status reports afterwards.
type workloadPlan struct {
	remove, force []string
	create        map[string]string // pod name → Node
	live, updated int               // pods not being deleted after the pass; of them, of the current template
	ready         int               // of the updated ones, Ready
	unplaced      int               // replicas no Node can take now
}

// sortPods is what both controllers do first with a workload's pods: a pod of a Node that is
// gone is deleted at once, a pod of an older template gracefully; taken are every pod's names
// (a terminating one's too), current the pods of the current template that stay.
func sortPods(nodes []clusterNode, pods []podView, hash string) (plan workloadPlan, taken map[string]bool, current []podView) {
	plan = workloadPlan{create: map[string]string{}}
	exists := map[string]bool{}
	for _, n := range nodes {
		exists[n.name] = true
	}
	taken = map[string]bool{}
	for _, p := range pods {
		taken[p.name] = true
		switch {
		case !exists[p.node]:
			plan.force = append(plan.force, p.name)
		case p.terminating:
		case p.hash != hash:
			plan.remove = append(plan.remove, p.name)
		default:
			current = append(current, p)
		}
	}
	return plan, taken, current
}

// planDaemonSet: one pod of the current template per Node.
func planDaemonSet(ds string, nodes []clusterNode, pods []podView, hash string) workloadPlan {
	plan, taken, current := sortPods(nodes, pods, hash)
	for _, p := range current {
		plan.live++
		plan.updated++
		if p.ready {
			plan.ready++
		}
	}
	for _, n := range nodes {
		// The pod of a Node is replaced once its old one is gone (the name is the Node's).
		if name := ds + "-" + n.name; !taken[name] {
			plan.create[name] = n.name
			plan.live++
			plan.updated++
		}
	}
	return plan
}

// planDeployment: replicas pods of the current template on schedulable Nodes, fewest first.
func planDeployment(deploy string, replicas int, nodes []clusterNode, pods []podView, hash string) workloadPlan {
	plan, taken, keep := sortPods(nodes, pods, hash)
	perNode := map[string]int{}
	// Scaling down deletes the surplus, newest names last kept.
	for len(keep) > replicas {
		plan.remove = append(plan.remove, keep[len(keep)-1].name)
		keep = keep[:len(keep)-1]
	}
	for _, p := range keep {
		perNode[p.node]++
		if p.ready {
			plan.ready++
		}
	}
	plan.live, plan.updated = len(keep), len(keep)
	next := 0
	for i := len(keep); i < replicas; i++ {
		var target string
		for _, n := range nodes {
			if n.schedulable && (target == "" || perNode[n.name] < perNode[target]) {
				target = n.name
			}
		}
		if target == "" {
			plan.unplaced++
			continue
		}
		for taken[deploy+"-"+strconv.Itoa(next)] {
			next++
		}
		name := deploy + "-" + strconv.Itoa(next)
		taken[name] = true
		perNode[target]++
		plan.create[name] = target
		plan.live++
		plan.updated++
	}
	return plan
}

// syncWorkloads is one pass of the modelled controllers over kube-system's workloads.
func (api *realAPI) syncWorkloads() error {
	var nodeList corev1.NodeList
	if err := api.admin.do(http.MethodGet, "/api/v1/nodes", nil, &nodeList); err != nil {
		return err
	}
	nodes := make([]clusterNode, 0, len(nodeList.Items))
	for _, n := range nodeList.Items {
		ready := slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		})
		nodes = append(nodes, clusterNode{name: n.Name, schedulable: ready && !n.Spec.Unschedulable})
	}
	slices.SortFunc(nodes, func(a, b clusterNode) int { return cmp.Compare(a.name, b.name) })
	var podList corev1.PodList
	if err := api.admin.do(http.MethodGet, "/api/v1/namespaces/kube-system/pods", nil, &podList); err != nil {
		return err
	}
	owned := map[string][]podView{} // owner UID → its pods, by name
	for _, p := range podList.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil {
			owned[string(ref.UID)] = append(owned[string(ref.UID)], viewPod(p))
		}
	}
	for _, ps := range owned {
		slices.SortFunc(ps, func(a, b podView) int { return cmp.Compare(a.name, b.name) })
	}

	const apps = "/apis/apps/v1/namespaces/kube-system/"
	var deployments appsv1.DeploymentList
	if err := api.admin.do(http.MethodGet, apps+"deployments", nil, &deployments); err != nil {
		return err
	}
	for _, d := range deployments.Items {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		var status appsv1.DeploymentStatus
		if managedByTalos(d.ObjectMeta) {
			owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}
			hash := templateHash(d.Spec.Template)
			plan := planDeployment(d.Name, int(replicas), nodes, owned[string(d.UID)], hash)
			if err := api.carryOut(plan, owner, d.Spec.Template, hash); err != nil {
				return fmt.Errorf("deployment %s: %w", d.Name, err)
			}
			status = deploymentStatus(d.Generation, replicas, plan)
		} else {
			status = deploymentStatus(d.Generation, replicas, workloadPlan{live: int(replicas), updated: int(replicas), ready: int(replicas)})
		}
		if !reflect.DeepEqual(d.Status, status) {
			d.TypeMeta, d.Status = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, status
			if err := api.writeStatus(apps+"deployments/"+d.Name, &d); err != nil {
				return err
			}
		}
	}
	var daemonSets appsv1.DaemonSetList
	if err := api.admin.do(http.MethodGet, apps+"daemonsets", nil, &daemonSets); err != nil {
		return err
	}
	for _, ds := range daemonSets.Items {
		plan := workloadPlan{live: len(nodes), updated: len(nodes), ready: len(nodes)}
		if managedByTalos(ds.ObjectMeta) {
			owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID}
			hash := templateHash(ds.Spec.Template)
			plan = planDaemonSet(ds.Name, nodes, owned[string(ds.UID)], hash)
			if err := api.carryOut(plan, owner, ds.Spec.Template, hash); err != nil {
				return fmt.Errorf("daemonset %s: %w", ds.Name, err)
			}
		}
		desired := int32(len(nodes))
		status := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: desired,
			CurrentNumberScheduled: int32(plan.live), UpdatedNumberScheduled: int32(plan.updated),
			NumberReady: int32(plan.ready), NumberAvailable: int32(plan.ready), NumberUnavailable: max(desired-int32(plan.ready), 0)}
		if !reflect.DeepEqual(ds.Status, status) {
			ds.TypeMeta, ds.Status = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"}, status
			if err := api.writeStatus(apps+"daemonsets/"+ds.Name, &ds); err != nil {
				return err
			}
		}
	}
	return nil
}

// deploymentStatus is what the Deployment controller reports of a pass: status.replicas counts
// the pods it wants, those no Node can take yet (Pending in a real cluster) included.
func deploymentStatus(generation int64, replicas int32, plan workloadPlan) appsv1.DeploymentStatus {
	total := int32(plan.live + plan.unplaced)
	ready := int32(plan.ready)
	available, progressing := corev1.ConditionFalse, "ReplicaSetUpdated"
	if ready >= replicas {
		available = corev1.ConditionTrue
		if int32(plan.updated) == total {
			progressing = "NewReplicaSetAvailable"
		}
	}
	return appsv1.DeploymentStatus{ObservedGeneration: generation, Replicas: total, UpdatedReplicas: int32(plan.updated),
		ReadyReplicas: ready, AvailableReplicas: ready, UnavailableReplicas: max(total-ready, 0),
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: available, Reason: map[bool]string{true: "MinimumReplicasAvailable", false: "MinimumReplicasUnavailable"}[available == corev1.ConditionTrue]},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: progressing},
		}}
}

// carryOut deletes and creates the plan's pods with the admin client.
func (api *realAPI) carryOut(plan workloadPlan, owner metav1.OwnerReference, t corev1.PodTemplateSpec, hash string) error {
	const pods = "/api/v1/namespaces/kube-system/pods"
	for _, name := range plan.force {
		if err := api.admin.do(http.MethodDelete, pods+"/"+name, map[string]any{"gracePeriodSeconds": 0}, nil); err != nil && !isNotFound(err) {
			return err
		}
	}
	for _, name := range plan.remove {
		if err := api.admin.do(http.MethodDelete, pods+"/"+name, nil, nil); err != nil && !isNotFound(err) {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(plan.create)) {
		pod := podFor(name, owner, t, hash, plan.create[name])
		if err := api.admin.do(http.MethodPost, pods, pod, nil); err != nil {
			return fmt.Errorf("creating pod %s: %w", name, err)
		}
	}
	return nil
}

// writeStatus replaces a workload's status (a PUT of the status subresource, so counts that
// fell to zero are written too; a conflict is retried on the next round).
func (api *realAPI) writeStatus(path string, obj any) error {
	if err := api.admin.do(http.MethodPut, path+"/status", obj, nil); err != nil && !isNotFound(err) && !isConflict(err) {
		return fmt.Errorf("%s status: %w", path, err)
	}
	return nil
}

func isConflict(err error) bool {
	var apiErr *apiError
	return errors.As(err, &apiErr) && apiErr.code == http.StatusConflict
}
