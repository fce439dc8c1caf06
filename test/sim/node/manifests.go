package node

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	kresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The bootstrap manifests, as Talos v1.14.1 renders and applies them:
//
//   - A control plane's ManifestController (internal/app/machined/pkg/controllers/k8s/manifest.go)
//     renders, from BootstrapManifestsConfig, one k8s.Manifest resource (namespace controlplane)
//     per group of objects; the objects come from the templates in controllers/k8s/internal/
//     k8stemplates. A config change re-renders them. Modelled here: the CSR RBAC (csr.go), the
//     in-cluster kubeconfig (kubeconfig.go), Talos' node RBAC (talos.go), CoreDNS (coredns.go) and
//     kube-proxy (kube-proxy.go) when the config enables them. Not modelled: the kubelet bootstrap
//     token Secret, flannel, the Talos API CRD and kube-proxy's config-file ConfigMap.
//   - Its ManifestApplyController (manifest_apply.go) applies them once the API server answers,
//     create-only: an object that exists is never updated (1.14 marks what it created with the
//     owning-inventory annotation and applies it server-side as field manager "talos"). So a
//     re-rendered manifest reaches the cluster only through `talosctl upgrade-k8s`' final sync
//     (pkg/cluster/kubernetes/talos_managed.go PerformManifestsSync).
//
// The simulation runs no kube-controller-manager, so the pods and status its Deployment and
// DaemonSet controllers would keep are modelled too (workloads.go): a rollout wait can finish.

// renderManifests is ManifestController.render for the modelled manifests: id → objects.
func renderManifests(cfg config.Provider) map[string][]runtime.Object {
	out := map[string][]runtime.Object{
		"01-csr-node-bootstrap":        {clusterRoleBinding("system-bootstrap-node-bootstrapper", "system:node-bootstrapper", nil, group("system:bootstrappers:nodes"), group("system:nodes"))},
		"01-csr-approver-role-binding": {clusterRoleBinding("system-bootstrap-approve-node-client-csr", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", nil, group("system:bootstrappers:nodes"))},
		"01-csr-renewal-role-binding":  {clusterRoleBinding("system-bootstrap-node-renewal", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", nil, group("system:nodes"))},
		"11-kube-config-in-cluster":    {kubeconfigInCluster(manifestServer(cfg))},
		"11-talos-node-rbac-template": {
			clusterRoleBinding("system:talos-nodes", "system:talos-nodes", rbacDefaults(true), group("system:nodes")),
			clusterRole("system:talos-nodes", rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}}),
		},
	}
	if dns := cfg.K8sCoreDNSConfig(); dns != nil && dns.Enabled() {
		out["11-core-dns"] = []runtime.Object{
			serviceAccount("coredns"),
			clusterRole("system:coredns",
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
				rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}}),
			clusterRoleBinding("system:coredns", "system:coredns", rbacDefaults(true), rbacv1.Subject{Kind: "ServiceAccount", Name: "coredns", Namespace: "kube-system"}),
			coreDNSConfigMap(dnsDomain(cfg)),
			coreDNSDeployment(dns.Image()),
		}
		out["11-core-dns-svc"] = []runtime.Object{coreDNSService(cfg)}
	}
	if proxy := cfg.K8sProxyConfig(); proxy != nil && proxy.Enabled() {
		out["10-kube-proxy"] = []runtime.Object{
			kubeProxyDaemonSet(proxy.Image(), kubeProxyArgs(cfg)),
			serviceAccount("kube-proxy"),
			clusterRoleBinding("kube-proxy", "system:node-proxier", nil, rbacv1.Subject{Kind: "ServiceAccount", Name: "kube-proxy", Namespace: "kube-system"}),
		}
	}
	return out
}

// manifestsConfigured writes the rendered manifests of a control plane's active config as
// k8s.Manifest resources; an unchanged one keeps its version, as the controller's modify does.
func (n *Node) manifestsConfigured(ctx context.Context, cfg config.Provider) {
	rendered := renderManifests(cfg)
	// A manifest no longer rendered (kube-proxy turned off) goes, as the controller removes it.
	if list, err := safe.StateListAll[*k8s.Manifest](ctx, n.cosi); err == nil {
		for m := range list.All() {
			if _, ok := rendered[m.Metadata().ID()]; !ok {
				if err := n.cosi.Destroy(ctx, m.Metadata()); err != nil {
					log.Printf("node %s: manifest %s: %v", n.address, m.Metadata().ID(), err)
				}
			}
		}
	}
	for id, objs := range rendered {
		res := k8s.NewManifest(k8s.ControlPlaneNamespaceName, id)
		for _, obj := range objs {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
			if err != nil {
				log.Printf("node %s: manifest %s: %v", n.address, id, err)
				return
			}
			delete(u, "status")
			res.TypedSpec().Items = append(res.TypedSpec().Items, k8s.SingleManifest{Object: u})
		}
		if existing, err := safe.StateGetByID[*k8s.Manifest](ctx, n.cosi, id); err == nil && jsonOf(existing.TypedSpec()) == jsonOf(res.TypedSpec()) {
			continue
		}
		if err := put(ctx, n.cosi, res); err != nil {
			log.Printf("node %s: manifest %s: %v", n.address, id, err)
		}
	}
}

// manifestServer is BootstrapManifestsConfig's server: KubePrism when enabled, else the endpoint
// (controllers/k8s/control_plane.go ControlPlaneBootstrapManifestsController).
func manifestServer(cfg config.Provider) string {
	if kp := cfg.K8sKubePrismConfig(); kp != nil {
		return fmt.Sprintf("https://127.0.0.1:%d", kp.Port())
	}
	if ep := clusterEndpoint(cfg); ep != nil {
		return ep.String()
	}
	return ""
}

func group(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: "Group", Name: name, APIGroup: rbacv1.GroupName}
}

func rbacDefaults(autoupdate bool) *metav1.ObjectMeta {
	m := &metav1.ObjectMeta{Labels: map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}}
	if autoupdate {
		m.Annotations = map[string]string{"rbac.authorization.kubernetes.io/autoupdate": "true"}
	}
	return m
}

func clusterRoleBinding(name, role string, meta *metav1.ObjectMeta, subjects ...rbacv1.Subject) runtime.Object {
	obj := &rbacv1.ClusterRoleBinding{
		TypeMeta: metav1.TypeMeta{Kind: "ClusterRoleBinding", APIVersion: rbacv1.SchemeGroupVersion.String()},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: subjects,
	}
	if meta != nil {
		obj.ObjectMeta = *meta
	}
	obj.Name = name
	return obj
}

func clusterRole(name string, rules ...rbacv1.PolicyRule) runtime.Object {
	meta := rbacDefaults(false)
	meta.Name = name
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{Kind: "ClusterRole", APIVersion: rbacv1.SchemeGroupVersion.String()},
		ObjectMeta: *meta,
		Rules:      rules,
	}
}

func serviceAccount(name string) runtime.Object {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{Kind: "ServiceAccount", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"},
	}
}

// kubeconfigInCluster is the ConfigMap kube-proxy mounts: the server through a service account.
func kubeconfigInCluster(server string) runtime.Object {
	kubeconfig := strings.Join([]string{
		"apiVersion: v1",
		"clusters:",
		"- cluster:",
		"    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
		"    server: " + server,
		"  name: local",
		"contexts:",
		"- context:",
		"    cluster: local",
		"    user: service-account",
		"  name: local",
		"current-context: local",
		"kind: Config",
		"users:",
		"- name: service-account",
		"  user:",
		"    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
		"",
	}, "\n")
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubeconfig-in-cluster", Namespace: "kube-system"},
		Data:       map[string]string{"kubeconfig": kubeconfig},
	}
}

// coreDNSConfigMap holds the Corefile: the cluster domain served, errors cached only briefly.
func coreDNSConfigMap(domain string) runtime.Object {
	cache := "    cache 30\n"
	if domain != "" {
		cache = fmt.Sprintf("    cache 30 {\n       disable success %s\n       disable denial %s\n    }\n", domain, domain)
	}
	corefile := ".:53 {\n    errors\n    health {\n        lameduck 5s\n    }\n    ready\n    log . {\n        class error\n    }\n    prometheus :9153\n\n" +
		fmt.Sprintf("    kubernetes %s in-addr.arpa ip6.arpa {\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n    }\n", domain) +
		"    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n" + cache + "    loop\n    reload\n    loadbalance\n}\n"
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"},
		Data:       map[string]string{"Corefile": corefile},
	}
}

// linuxNodes is the templates' node affinity (affinity.go): Linux on an architecture Talos runs.
var linuxNodes = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
	NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: "kubernetes.io/os", Operator: corev1.NodeSelectorOpIn, Values: []string{"linux"}},
		{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: constants.SupportedArchitectures},
	}}},
}}

// coreDNSDeployment is two CoreDNS replicas spread over hosts, tolerating control planes.
func coreDNSDeployment(image string) runtime.Object {
	labels := map[string]string{"k8s-app": "kube-dns"}
	replicas := int32(2)
	maxUnavailable := intstr.FromInt(1)
	no, yes := false, true
	probe := func(path string, port int) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt(port), Scheme: corev1.URISchemeHTTP}}}
	}
	liveness := probe("/health", 8080)
	liveness.InitialDelaySeconds, liveness.TimeoutSeconds, liveness.SuccessThreshold, liveness.FailureThreshold = 60, 5, 1, 5
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{Kind: "Deployment", APIVersion: appsv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable}},
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
					Affinity: &corev1.Affinity{NodeAffinity: linuxNodes, PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{
							LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k8s-app", Operator: metav1.LabelSelectorOpIn, Values: []string{"kube-dns"}}}},
							TopologyKey:   "kubernetes.io/hostname",
						}}},
					}},
					ServiceAccountName: "coredns",
					PriorityClassName:  "system-cluster-critical",
					Tolerations: []corev1.Toleration{
						{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
						{Key: "node.cloudprovider.kubernetes.io/uninitialized", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
					},
					Containers: []corev1.Container{{
						Name:            "coredns",
						Image:           image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Resources: corev1.ResourceRequirements{
							Limits:   corev1.ResourceList{corev1.ResourceMemory: kresource.MustParse("170Mi")},
							Requests: corev1.ResourceList{corev1.ResourceCPU: kresource.MustParse("100m"), corev1.ResourceMemory: kresource.MustParse("70Mi")},
						},
						Env:          []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "161MiB"}},
						Args:         []string{"-conf", "/etc/coredns/Corefile"},
						VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
						Ports: []corev1.ContainerPort{
							{Name: "dns", Protocol: corev1.ProtocolUDP, ContainerPort: 53},
							{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, ContainerPort: 53},
							{Name: "metrics", Protocol: corev1.ProtocolTCP, ContainerPort: 9153},
						},
						LivenessProbe:  liveness,
						ReadinessProbe: probe("/ready", 8181),
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no,
							Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
							ReadOnlyRootFilesystem:   &yes,
						},
					}},
					DNSPolicy: corev1.DNSDefault,
					Volumes: []corev1.Volume{{Name: "config-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"},
						Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
					}}}},
				},
			},
		},
	}
}

// coreDNSService is kube-dns at the cluster DNS address: the tenth of the first service CIDR of
// each family (control_plane.go picks the first IPv4 and the first IPv6 of cfg's DNS addresses).
func coreDNSService(cfg config.Provider) runtime.Object {
	var v4, v6 string
	var cidrs []netip.Prefix
	if n := cfg.K8sNetworkConfig(); n != nil {
		cidrs = n.ServiceCIDRs()
	}
	for _, ip := range k8s.DNSServiceAddrs(cidrs) {
		if v4 == "" && ip.Is4() {
			v4 = ip.String()
		}
		if v6 == "" && ip.Is6() {
			v6 = ip.String()
		}
	}
	obj := &corev1.Service{
		TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "kube-dns", Namespace: "kube-system",
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9153"},
			Labels:      map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
		},
		Spec: corev1.ServiceSpec{
			Selector:  map[string]string{"k8s-app": "kube-dns"},
			ClusterIP: cmp.Or(v4, v6),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(9153)},
			},
		},
	}
	for _, f := range []struct {
		ip     string
		family corev1.IPFamily
	}{{v4, corev1.IPv4Protocol}, {v6, corev1.IPv6Protocol}} {
		if f.ip != "" {
			obj.Spec.ClusterIPs = append(obj.Spec.ClusterIPs, f.ip)
			obj.Spec.IPFamilies = append(obj.Spec.IPFamilies, f.family)
		}
	}
	policy := corev1.IPFamilyPolicySingleStack
	if v4 != "" && v6 != "" {
		policy = corev1.IPFamilyPolicyRequireDualStack
	}
	obj.Spec.IPFamilyPolicy = &policy
	return obj
}

// kubeProxyArgs is kube-proxy's command line without a config file (control_plane.go
// manageProxyConfigArgs): Talos' flags, nftables unless the config names a mode, merged with
// extraArgs (which may not replace the kubeconfig).
func kubeProxyArgs(cfg config.Provider) []string {
	proxy := cfg.K8sProxyConfig()
	args := map[string]string{
		"cluster-cidr":           strings.Join(podCIDRs(cfg), ","),
		"hostname-override":      "$(NODE_NAME)",
		"kubeconfig":             "/etc/kubernetes/kubeconfig",
		"proxy-mode":             cmp.Or(proxy.Mode(), "nftables"),
		"conntrack-max-per-core": "0",
	}
	for k, v := range proxy.ExtraArgs() {
		if k != "kubeconfig" {
			args[k] = strings.Join(v, ",")
		}
	}
	out := make([]string, 0, len(args))
	for _, k := range slices.Sorted(maps.Keys(args)) {
		out = append(out, "--"+k+"="+args[k])
	}
	return out
}

// kubeProxyDaemonSet runs kube-proxy privileged on the host network of every Linux node.
func kubeProxyDaemonSet(image string, args []string) runtime.Object {
	labels := map[string]string{"tier": "node", "k8s-app": "kube-proxy"}
	maxUnavailable := intstr.FromInt(1)
	privileged := true
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{Kind: "DaemonSet", APIVersion: appsv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Affinity: &corev1.Affinity{NodeAffinity: linuxNodes},
					Containers: []corev1.Container{{
						Name:    "kube-proxy",
						Image:   image,
						Command: append([]string{"/usr/local/bin/kube-proxy"}, args...),
						Env: []corev1.EnvVar{
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
							{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
						},
						Resources:       corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: kresource.MustParse("100m"), corev1.ResourceMemory: kresource.MustParse("50Mi")}},
						SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "lib-modules", MountPath: "/lib/modules", ReadOnly: true},
							{Name: "ssl-certs-host", MountPath: "/etc/ssl/certs", ReadOnly: true},
							{Name: "kubeconfig", MountPath: "/etc/kubernetes", ReadOnly: true},
						},
					}},
					HostNetwork:        true,
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: "kube-proxy",
					Tolerations: []corev1.Toleration{
						{Effect: corev1.TaintEffectNoSchedule, Operator: corev1.TolerationOpExists},
						{Effect: corev1.TaintEffectNoExecute, Operator: corev1.TolerationOpExists},
					},
					Volumes: []corev1.Volume{
						{Name: "lib-modules", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/usr/lib/modules"}}},
						{Name: "ssl-certs-host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/ssl/certs"}}},
						{Name: "kubeconfig", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "kubeconfig-in-cluster"}}}},
					},
				},
			},
		},
	}
}

// Talos 1.14 marks what it creates as part of its bootstrap-manifests inventory (go-kubernetes
// ssa.InventoryAnnotationKey, constants.KubernetesBootstrapManifestsInventoryName).
const annotationOwningInventory = "config.k8s.io/owning-inventory"

// manifestKinds are the API paths of the kinds the modelled manifests hold.
var manifestKinds = map[string]struct {
	prefix, plural string
	namespaced     bool
}{
	"v1/ServiceAccount":  {"/api/v1", "serviceaccounts", true},
	"v1/ConfigMap":       {"/api/v1", "configmaps", true},
	"v1/Service":         {"/api/v1", "services", true},
	"apps/v1/Deployment": {"/apis/apps/v1", "deployments", true},
	"apps/v1/DaemonSet":  {"/apis/apps/v1", "daemonsets", true},
	"rbac.authorization.k8s.io/v1/ClusterRole":        {"/apis/rbac.authorization.k8s.io/v1", "clusterroles", false},
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": {"/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", false},
}

// applyManifests is ManifestApplyController's pass over one control plane's manifests, in the
// order of their ids: each object that does not exist is created (from Talos 1.13 on server-side,
// as "talos", with the inventory annotation); one that exists is left as it is.
func (api *realAPI) applyManifests(n *Node, running string) error {
	inventory := releaseAtLeast(running, 13)
	list, err := safe.StateListAll[*k8s.Manifest](context.Background(), n.cosi)
	if err != nil {
		return err
	}
	manifests := slices.Collect(list.All())
	slices.SortFunc(manifests, func(a, b *k8s.Manifest) int { return cmp.Compare(a.Metadata().ID(), b.Metadata().ID()) })
	for _, m := range manifests {
		for _, item := range m.TypedSpec().Items {
			obj := runtime.DeepCopyJSON(item.Object)
			apiVersion, _ := obj["apiVersion"].(string)
			kind, _ := obj["kind"].(string)
			k, ok := manifestKinds[apiVersion+"/"+kind]
			if !ok {
				return fmt.Errorf("manifest %s: kind %s/%s is not modelled", m.Metadata().ID(), apiVersion, kind)
			}
			meta, _ := obj["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			path := k.prefix + "/" + k.plural + "/" + name
			if k.namespaced {
				ns, _ := meta["namespace"].(string)
				path = k.prefix + "/namespaces/" + cmp.Or(ns, "default") + "/" + k.plural + "/" + name
			}
			err := api.admin.do(http.MethodGet, path, nil, nil)
			if err == nil {
				continue
			}
			if !isNotFound(err) {
				return err
			}
			if !inventory {
				// Before 1.13 Talos kept no inventory (v1.14.1 manifest_apply.go: "Talos v1.13 inserted ...
				// into the inventory"): a plain create, modelled with the same field manager.
				create := strings.TrimSuffix(path, "/"+name) + "?fieldManager=" + constants.KubernetesFieldManagerName
				if err := api.admin.do(http.MethodPost, create, obj, nil); err != nil {
					return fmt.Errorf("creating %s %s: %w", kind, name, err)
				}
				continue
			}
			annotations, _ := meta["annotations"].(map[string]any)
			if annotations == nil {
				annotations = map[string]any{}
			}
			annotations[annotationOwningInventory] = constants.KubernetesBootstrapManifestsInventoryName
			meta["annotations"] = annotations
			if err := api.admin.send(http.MethodPatch, path+"?fieldManager="+constants.KubernetesFieldManagerName, "application/apply-patch+yaml", obj, nil); err != nil {
				return fmt.Errorf("creating %s %s: %w", kind, name, err)
			}
		}
	}
	return nil
}

// manifestsVersion names the manifests a control plane holds now (ids and versions), so the
// apply runs again only when they change, as the controller runs on their events.
func manifestsVersion(n *Node) string {
	list, err := safe.StateListAll[*k8s.Manifest](context.Background(), n.cosi)
	if err != nil {
		return ""
	}
	var parts []string
	for m := range list.All() {
		parts = append(parts, m.Metadata().ID()+"@"+m.Metadata().Version().String())
	}
	slices.Sort(parts)
	return n.address.String() + " " + strings.Join(parts, ",")
}

// applyClusterManifests runs the create-only apply of every running control plane of the
// cluster whose manifests changed since its last successful pass.
func (api *realAPI) applyClusterManifests(members []member) {
	for _, m := range members {
		if !m.controlPlane() {
			continue
		}
		key := manifestsVersion(m.node)
		api.mu.Lock()
		done := api.manifestsApplied[m.node.address.String()] == key
		api.mu.Unlock()
		if done || strings.HasSuffix(key, " ") {
			continue
		}
		if err := api.applyManifests(m.node, m.running); err != nil {
			log.Printf("node %s: bootstrap manifests: %v", m.node.address, err)
			continue
		}
		api.mu.Lock()
		api.manifestsApplied[m.node.address.String()] = key
		api.mu.Unlock()
	}
}
