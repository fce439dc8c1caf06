// Which node label keys a kubelet may set on its own Node. Talos applies a worker's nodeLabels with
// the kubelet's credentials, so Kubernetes' NodeRestriction admission judges them, and it refuses
// the whole update (every label, not only the bad one) when one key is outside its allow-list
// (plugin/pkg/admission/noderestriction getForbiddenLabels; pkg/kubelet/apis IsKubeletLabel).
// Pure: a key in, the reason it is refused (or undefined) out.

/** Keys a kubelet may set although they sit in the kubernetes.io namespaces. */
const KUBELET_LABELS = new Set([
  "kubernetes.io/hostname",
  "kubernetes.io/arch",
  "kubernetes.io/os",
  "beta.kubernetes.io/arch",
  "beta.kubernetes.io/os",
  "beta.kubernetes.io/instance-type",
  "node.kubernetes.io/instance-type",
  "topology.kubernetes.io/region",
  "topology.kubernetes.io/zone",
  "failure-domain.beta.kubernetes.io/region",
  "failure-domain.beta.kubernetes.io/zone",
]);
/** Namespaces (and their subdomains) a kubelet may label freely. */
const KUBELET_NAMESPACES = ["kubelet.kubernetes.io", "node.kubernetes.io"];

const inNamespace = (namespace: string, domain: string) => namespace === domain || namespace.endsWith(`.${domain}`);

/** Why NodeRestriction refuses this label key from a kubelet, or undefined when it allows it. */
export function kubeletLabelRefusal(key: string): string | undefined {
  const slash = key.indexOf("/");
  if (slash < 0) return undefined;
  const namespace = key.slice(0, slash);
  if (inNamespace(namespace, "node-restriction.kubernetes.io")) {
    return "node-restriction.kubernetes.io labels are reserved for administrators";
  }
  const kubernetes = inNamespace(namespace, "kubernetes.io") || inNamespace(namespace, "k8s.io");
  if (!kubernetes || KUBELET_LABELS.has(key) || KUBELET_NAMESPACES.some((ns) => inNamespace(namespace, ns))) return undefined;
  return `a kubelet may set kubernetes.io and k8s.io labels only under node.kubernetes.io/ or kubelet.kubernetes.io/ (or the topology and os/arch keys)`;
}
