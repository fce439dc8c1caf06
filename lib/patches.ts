// Machine-config patch builders: plain objects in, plain objects out, serialised once at the edge.
// Patches are strategic-merge patches, each one document: v1alpha1's machine config, or (for what
// a newer contract moves out of it) a document of its own.
import type { ClusterConfig, NodeConfig, Patch } from "./config/schema";
import { CONFIG_LIBRARY, minorAtLeast, talosMinor } from "./versions";

/**
 * Whether the Kubernetes settings go into Talos 1.14's documents (KubeNetworkConfig,
 * KubeProxyConfig, KubeFlannelCNIConfig, KubeAPIServerConfig, KubeNodeConfig, KubeletConfig)
 * rather than v1alpha1's `cluster.*` and `machine.kubelet`/`nodeLabels`/`nodeTaints`. A 1.14
 * library generating for a 1.14 contract writes only the documents (machinery
 * config/generate/kubernetes.go, contract.go MultidocKubernetesConfigSupported) and refuses an old
 * field beside its document (each document's V1Alpha1ConflictValidate); older contracts keep the
 * v1alpha1 shape.
 */
export function kubernetesInDocuments(contract: string, library: string = CONFIG_LIBRARY.minor): boolean {
  return atLeast(contract, "1.14") && minorAtLeast(library, "1.14");
}

/**
 * Whether a node's hostname goes into a HostnameConfig document rather than
 * machine.network.hostname. A config library of 1.12 or later generating for a 1.12 contract adds
 * `HostnameConfig {auto: stable}`, which refuses a v1alpha1 hostname beside it ("static hostname
 * is already set in v1alpha1 config"); older libraries and contracts have no such document.
 */
export function hostnameInDocument(contract: string, library: string = CONFIG_LIBRARY.minor): boolean {
  return atLeast(contract, "1.12") && minorAtLeast(library, "1.12");
}

function atLeast(release: string, minor: string): boolean {
  const m = talosMinor(release);
  return m !== undefined && minorAtLeast(m, minor);
}

/** A Talos config document (multi-document machine config) patch. */
const doc = (kind: string, body: Record<string, unknown>): Patch => ({ apiVersion: "v1alpha1", kind, ...body });

/**
 * Patches every node of the cluster gets, before role and node patches. `contract` is the
 * cluster's config contract (the Talos release it was created with), `library` the minor of the
 * config library that renders the config: together they choose the config's shape.
 */
export function clusterPatches(config: ClusterConfig, contract: string, library: string = CONFIG_LIBRARY.minor): Patch[] {
  const machine: Record<string, unknown> = { certSANs: [config.endpointHost] };
  // Serving certs signed by the cluster CA let metrics-server verify kubelets; the approver
  // signs the CSRs this produces, so rotation is only on when the approver is.
  const rotate = config.addons.kubeletServingCertApprover.enabled ? { extraArgs: { "rotate-server-certificates": "true" } } : undefined;
  const subnets = { podSubnets: config.network.podSubnets, serviceSubnets: config.network.serviceSubnets };
  if (kubernetesInDocuments(contract, library)) {
    // Cilium's CNI and kube-proxy settings live in documents only control planes carry (controlPlanePatches).
    return [{ machine }, doc("KubeNetworkConfig", subnets), ...(rotate ? [doc("KubeletConfig", rotate)] : []), ...config.patches.all];
  }
  const cluster: Record<string, unknown> = {
    network: {
      ...subnets,
      // Cilium brings the CNI; Talos must not install flannel underneath it.
      ...(config.addons.cilium.enabled ? { cni: { name: "none" } } : {}),
    },
    // Cilium's kube-proxy replacement takes over services; two proxies fight over iptables.
    ...(config.addons.cilium.enabled ? { proxy: { disabled: true } } : {}),
  };
  if (rotate) machine.kubelet = rotate;
  return [{ machine, cluster }, ...config.patches.all];
}

/** Talos' taint on every control plane, which the generated KubeNodeConfig lists explicitly from 1.14. */
const CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane";

/** Patches for every control-plane node. */
export function controlPlanePatches(config: ClusterConfig, contract: string, library: string = CONFIG_LIBRARY.minor): Patch[] {
  // With no workers, workloads (and the addons) must be allowed on control planes or nothing runs.
  const noWorkers = config.workers.length === 0;
  const patches: Patch[] = [];
  if (kubernetesInDocuments(contract, library)) {
    patches.push(doc("KubeAPIServerConfig", { certExtraSANs: [config.endpointHost] }));
    // The generated KubeNodeConfig taints control planes (NoSchedule); remove that one taint.
    if (noWorkers) patches.push(doc("KubeNodeConfig", { taints: { [CONTROL_PLANE_TAINT]: { $patch: "delete" } } }));
    if (config.addons.cilium.enabled) {
      // As Talos' own Cilium tests do (hack/test/patches/cilium-kubeproxy.yaml): no flannel, no kube-proxy.
      patches.push(doc("KubeProxyConfig", { enabled: false }), doc("KubeFlannelCNIConfig", { $patch: "delete" }));
    }
  } else {
    const cluster: Record<string, unknown> = { apiServer: { certSANs: [config.endpointHost] } };
    if (noWorkers) cluster.allowSchedulingOnControlPlanes = true;
    patches.push({ cluster });
  }
  const vip = config.network.vip;
  if (vip !== undefined) {
    const link = vip.interface !== undefined ? { interface: vip.interface } : { deviceSelector: vip.deviceSelector };
    patches.push({
      machine: { network: { interfaces: [{ ...link, ...(vip.dhcp ? { dhcp: true } : {}), vip: { ip: vip.address } }] } },
    });
  }
  patches.push(...config.patches.controlplane);
  return patches;
}

/** Patches for every worker node. */
export function workerPatches(config: ClusterConfig): Patch[] {
  return [...config.patches.worker];
}

/** Role patches for a node's role. */
export function rolePatches(
  config: ClusterConfig,
  role: NodeConfig["role"],
  contract: string,
  library: string = CONFIG_LIBRARY.minor,
): Patch[] {
  return role === "controlplane" ? controlPlanePatches(config, contract, library) : workerPatches(config);
}

/**
 * Patches for one node: identity, install target, labels and taints, then the node's own patches
 * last so a stack can override anything above. `contract` and `library` as for clusterPatches.
 * The install stays in machine.install for every contract: Talos 1.14 still installs from it when
 * the config has no UnattendedInstallConfig, which the renderer must then not generate
 * (talosvalidate/README.md).
 */
export function nodePatches(node: NodeConfig, installerImage: string, contract: string, library: string = CONFIG_LIBRARY.minor): Patch[] {
  const install: Record<string, unknown> = { image: installerImage };
  // Validation guarantees exactly one of the two.
  if (node.installDisk !== undefined) install.disk = node.installDisk;
  else if (node.installDiskSelector !== undefined) install.diskSelector = node.installDiskSelector;

  const named = hostnameInDocument(contract, library);
  const documents = kubernetesInDocuments(contract, library);
  const machine: Record<string, unknown> = named ? { install } : { network: { hostname: node.name }, install };
  const kubeNode: Record<string, unknown> = {};
  let kubelet: Record<string, unknown> | undefined;
  if (Object.keys(node.labels).length > 0) kubeNode.labels = sortedRecord(node.labels);
  if (node.taints.length > 0) {
    const taints = [...node.taints].sort((a, b) => a.key.localeCompare(b.key));
    if (node.role === "controlplane") {
      // Talos taints control planes with admin credentials, on every config change.
      kubeNode.taints = Object.fromEntries(taints.map((t) => [t.key, t.value === undefined ? t.effect : `${t.value}:${t.effect}`]));
    } else {
      // On workers Talos would use the kubelet's credentials, and NodeRestriction refuses a
      // kubelet's taint change together with the labels in the same update (talos #8193, #10935).
      // The kubelet may taint its Node when it registers it, so workers register with them; a
      // later change reaches a Node that already exists only through `kubectl taint` (docs/config.md, "Labels and taints").
      kubelet = { registerWithTaints: taints };
    }
  }
  const patches: Patch[] = [{ machine }];
  if (documents) {
    if (Object.keys(kubeNode).length > 0) patches.push(doc("KubeNodeConfig", kubeNode));
    if (kubelet !== undefined) patches.push(doc("KubeletConfig", { config: kubelet }));
  } else {
    if (kubeNode.labels !== undefined) machine.nodeLabels = kubeNode.labels;
    if (kubeNode.taints !== undefined) machine.nodeTaints = kubeNode.taints;
    if (kubelet !== undefined) machine.kubelet = { extraConfig: kubelet };
  }
  // auto must be off: the generated document's `auto: stable` and a hostname are refused together.
  if (named) patches.push(doc("HostnameConfig", { auto: "off", hostname: node.name }));
  return [...patches, ...node.patches];
}

function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Serialises patches for the provider. JSON is valid YAML, and keys keep the order the builders
 * gave them, so the same config always yields the same text and no spurious diff.
 */
export function serialisePatches(patches: Patch[]): string[] {
  return patches.map((p) => JSON.stringify(p));
}
