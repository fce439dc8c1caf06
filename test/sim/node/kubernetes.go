package node

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
)

// Unless the simulation runs a real control plane (Trust.RunControlPlane, apiserver.go), the
// simulator runs no API server. It keeps, per cluster, the Node objects that kubelets
// register and that Talos' node-apply controller updates, and applies to the updates the one
// rule that makes real machines fail where a forgiving fake would not: the NodeRestriction
// admission plugin on what a worker's kubelet credentials may change.

// KubernetesNode is what a machine's Node object looks like in its cluster's API server.
type KubernetesNode struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Taints []Taint           `json:"taints"`
	// Error is the API server's refusal of the last node-apply update, "" when it went through.
	Error string `json:"error"`
}

// Taint is a Kubernetes Node taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Effect string `json:"effect"`
}

// kubeNode is a stored Node object. The owned sets are the annotations talos.dev/owned-labels
// and talos.dev/owned-taints in which the node-apply controller remembers what it set.
type kubeNode struct {
	labels      map[string]string
	taints      []Taint
	ownedLabels map[string]bool
	ownedTaints map[string]bool
}

func (k *kubeNode) clone() *kubeNode {
	return &kubeNode{labels: maps.Clone(k.labels), taints: slices.Clone(k.taints), ownedLabels: maps.Clone(k.ownedLabels), ownedTaints: maps.Clone(k.ownedTaints)}
}

type apiServer struct{ nodes map[string]*kubeNode }

func (t *Trust) apiServer(cluster string) *apiServer {
	api, ok := t.apiServers[cluster]
	if !ok {
		api = &apiServer{nodes: map[string]*kubeNode{}}
		t.apiServers[cluster] = api
	}
	return api
}

const labelControlPlane = "node-role.kubernetes.io/control-plane"

// runKubelet is what one configured machine does against its cluster's API server while it runs
// and the cluster is bootstrapped: the kubelet registers the Node if it does not exist, then
// Talos' node-apply controller syncs labels and taints into it. It returns the Node as stored.
func (t *Trust) runKubelet(m member, bootstrapped bool) *KubernetesNode {
	if m.cfg == nil {
		return nil
	}
	api := t.apiServer(m.cluster)
	name := nodeName(m.hostname)
	if name == "" {
		return nil // Talos cannot make a Node name of the hostname: no kubelet runs
	}
	if m.up && bootstrapped {
		if _, registered := api.nodes[name]; !registered {
			taints, err := registerWithTaints(m.cfg, m.running)
			if err != nil {
				return nil // Talos cannot render the kubelet configuration: no kubelet runs
			}
			// Registration is a create, which NodeRestriction lets carry taints.
			api.nodes[name] = &kubeNode{
				labels:      kubeletNodeLabels(name),
				taints:      taints,
				ownedLabels: map[string]bool{},
				ownedTaints: map[string]bool{},
			}
		}
		t.nodeApply[m.node] = nodeApply(name, api.nodes[name], m.cfg)
	}
	stored, ok := api.nodes[name]
	if !ok {
		return nil
	}
	return &KubernetesNode{Name: name, Labels: maps.Clone(stored.labels), Taints: append([]Taint{}, stored.taints...), Error: t.nodeApply[m.node]}
}

// kubeletNodeLabels are the labels a kubelet registers its Node with (the kubelet's initialNode).
func kubeletNodeLabels(name string) map[string]string {
	return map[string]string{
		"kubernetes.io/hostname":  name,
		"kubernetes.io/os":        "linux",
		"kubernetes.io/arch":      "amd64",
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": "amd64",
	}
}

// nodeName is Talos' conversion of a hostname to a Node name (k8s/internal/nodename).
func nodeName(hostname string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		case r == '_':
			return '-'
		}
		return -1
	}, hostname)
	return strings.Trim(name, "-.")
}

// parseTaint is a node taint as the config writes it, value:effect or effect (Talos'
// pkg/machinery/labels ParseTaint).
func parseTaint(key, spec string) Taint {
	value, effect, found := strings.Cut(spec, ":")
	if !found {
		value, effect = "", spec
	}
	return Taint{Key: key, Value: value, Effect: effect}
}

// registerWithTaints is the kubelet's registerWithTaints (the kubelet's extra config), plus the
// taints Talos adds so that nothing is scheduled before the node-apply controller takes them over
// (controllers/k8s/kubelet_spec.go). Up to 1.13 that is the control-plane taint on a control
// plane that does not allow scheduling; from 1.14 every taint of the node's config
// (kubelet_config.go: RegisterWithTaints = K8sNodeConfig().Taints()), then sorted by key.
func registerWithTaints(cfg config.Provider, running string) ([]Taint, error) {
	var taints []Taint
	if raw, ok := kubeletExtraConfig(cfg)["registerWithTaints"]; ok {
		data, err := json.Marshal(raw)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, &taints); err != nil {
			return nil, fmt.Errorf("machine.kubelet.extraConfig.registerWithTaints: %w", err)
		}
	}
	if releaseAtLeast(running, 14) {
		for _, key := range slices.Sorted(maps.Keys(nodeTaints(cfg))) {
			if !slices.ContainsFunc(taints, func(t Taint) bool { return t.Key == key }) {
				taints = append(taints, parseTaint(key, nodeTaints(cfg)[key]))
			}
		}
		slices.SortFunc(taints, func(a, b Taint) int { return strings.Compare(a.Key, b.Key) })
		return taints, nil
	}
	if _, tainted := nodeTaints(cfg)[labelControlPlane]; tainted && cfg.Machine().Type().IsControlPlane() &&
		!slices.ContainsFunc(taints, func(t Taint) bool { return t.Key == labelControlPlane }) {
		taints = append(taints, Taint{Key: labelControlPlane, Effect: "NoSchedule"})
	}
	return taints, nil
}

// nodeApply is one sync of Talos' NodeApplyController: machine.nodeLabels and machine.nodeTaints
// (plus the control-plane label and taint on control planes) go into the Node in one update.
// Control planes use admin credentials; workers the kubelet's, so NodeRestriction judges the
// whole update and a refusal changes nothing. It returns the refusal, or "".
func nodeApply(name string, stored *kubeNode, cfg config.Provider) string {
	updated := nodeApplied(stored, cfg)
	if !cfg.Machine().Type().IsControlPlane() {
		if err := nodeRestriction(name, stored, updated); err != "" {
			return err
		}
	}
	*stored = *updated
	return ""
}

// nodeApplied is the Node as the node-apply controller would leave it: labels and taints from
// the config merged into the stored ones with its ownership rules.
func nodeApplied(stored *kubeNode, cfg config.Provider) *kubeNode {
	labels := maps.Clone(nodeLabels(cfg))
	if labels == nil {
		labels = map[string]string{}
	}
	taints := map[string]Taint{}
	for key, spec := range nodeTaints(cfg) {
		taints[key] = parseTaint(key, spec)
	}

	updated := stored.clone()
	applyLabels(updated, labels)
	// Talos reads its NodeTaintSpecs as a COSI list, sorted by key.
	applyTaints(updated, slices.SortedFunc(maps.Values(taints), func(a, b Taint) int { return strings.Compare(a.Key, b.Key) }))
	return updated
}

// applyLabels is NodeApplyController.applyNodeKV: set what is missing, update what Talos owns,
// leave others' values alone, remove owned labels the config no longer has.
func applyLabels(node *kubeNode, spec map[string]string) {
	for key, value := range spec {
		current, exists := node.labels[key]
		switch {
		case !exists:
			node.labels[key] = value
			node.ownedLabels[key] = true
		case current == value:
			node.ownedLabels[key] = true
		case node.ownedLabels[key]:
			node.labels[key] = value
		}
	}
	for key := range node.ownedLabels {
		if _, keep := spec[key]; !keep {
			delete(node.labels, key)
			delete(node.ownedLabels, key)
		}
	}
}

// applyTaints is NodeApplyController.ApplyTaints, the same for taints by key.
func applyTaints(node *kubeNode, spec []Taint) {
	for _, taint := range spec {
		i := slices.IndexFunc(node.taints, func(t Taint) bool { return t.Key == taint.Key })
		switch {
		case i < 0:
			node.taints = append(node.taints, taint)
			node.ownedTaints[taint.Key] = true
		case node.ownedTaints[taint.Key]:
			node.taints[i] = taint
		case node.taints[i] == taint:
			node.ownedTaints[taint.Key] = true
		}
	}
	node.taints = slices.DeleteFunc(node.taints, func(t Taint) bool {
		if !node.ownedTaints[t.Key] || slices.ContainsFunc(spec, func(s Taint) bool { return s.Key == t.Key }) {
			return false
		}
		delete(node.ownedTaints, t.Key)
		return true
	})
}

// nodeRestriction is the update half of Kubernetes' NodeRestriction admission for a Node
// (plugin/pkg/admission/noderestriction admitNode): a kubelet may not change its taints, nor
// add, change or remove a label outside what kubelets may set. The message is the API server's.
func nodeRestriction(name string, old, updated *kubeNode) string {
	if !slices.Equal(old.taints, updated.taints) {
		return fmt.Sprintf("nodes %q is forbidden: node %q is not allowed to modify taints", name, name)
	}
	var forbidden []string
	for key := range modifiedLabels(old.labels, updated.labels) {
		if forbiddenLabel(key) {
			forbidden = append(forbidden, key)
		}
	}
	if len(forbidden) > 0 {
		slices.Sort(forbidden)
		return fmt.Sprintf("nodes %q is forbidden: is not allowed to modify labels: %s", name, strings.Join(forbidden, ", "))
	}
	return ""
}

func modifiedLabels(a, b map[string]string) map[string]bool {
	modified := map[string]bool{}
	for key, value := range a {
		if other, ok := b[key]; !ok || other != value {
			modified[key] = true
		}
	}
	for key, value := range b {
		if other, ok := a[key]; !ok || other != value {
			modified[key] = true
		}
	}
	return modified
}

// forbiddenLabel is NodeRestriction's getForbiddenLabels for one key: node-restriction labels,
// and kubernetes.io / k8s.io labels that are not kubelet labels (k8s.io/kubelet/pkg/apis
// IsKubeletLabel).
func forbiddenLabel(key string) bool {
	namespace := labelNamespace(key)
	if inDomain(namespace, "node-restriction.kubernetes.io") {
		return true
	}
	return (inDomain(namespace, "kubernetes.io") || inDomain(namespace, "k8s.io")) && !kubeletLabel(key)
}

var kubeletLabels = []string{
	"kubernetes.io/hostname",
	"topology.kubernetes.io/zone",
	"topology.kubernetes.io/region",
	"failure-domain.beta.kubernetes.io/zone",
	"failure-domain.beta.kubernetes.io/region",
	"beta.kubernetes.io/instance-type",
	"node.kubernetes.io/instance-type",
	"kubernetes.io/os",
	"kubernetes.io/arch",
	"beta.kubernetes.io/os",
	"beta.kubernetes.io/arch",
}

func kubeletLabel(key string) bool {
	namespace := labelNamespace(key)
	return slices.Contains(kubeletLabels, key) || inDomain(namespace, "kubelet.kubernetes.io") || inDomain(namespace, "node.kubernetes.io")
}

// inDomain: the namespace is the domain or one of its subdomains.
func inDomain(namespace, domain string) bool {
	return namespace == domain || strings.HasSuffix(namespace, "."+domain)
}

func labelNamespace(key string) string {
	if prefix, _, found := strings.Cut(key, "/"); found {
		return prefix
	}
	return ""
}
