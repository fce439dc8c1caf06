// Machine-config patch builders: plain objects in, plain objects out, serialised once at the edge.
// Patches are strategic-merge patches in Talos' v1alpha1 machine config shape.
import type { ClusterConfig, NodeConfig, Patch } from "./config/schema";
import { minorAtLeast, PLUGIN_CONFIG_LIBRARY, talosMinor } from "./versions";

/** Patches every node of the cluster gets, before role and node patches. */
export function clusterPatches(config: ClusterConfig): Patch[] {
  const cluster: Record<string, unknown> = {
    network: {
      podSubnets: config.network.podSubnets,
      serviceSubnets: config.network.serviceSubnets,
      // Cilium brings the CNI; Talos must not install flannel underneath it.
      ...(config.addons.cilium.enabled ? { cni: { name: "none" } } : {}),
    },
    // Cilium's kube-proxy replacement takes over services; two proxies fight over iptables.
    ...(config.addons.cilium.enabled ? { proxy: { disabled: true } } : {}),
  };
  const machine: Record<string, unknown> = {
    certSANs: [config.endpointHost],
  };
  if (config.addons.kubeletServingCertApprover.enabled) {
    // Serving certs signed by the cluster CA let metrics-server verify kubelets; the approver
    // signs the CSRs this produces, so rotation is only on when the approver is.
    machine.kubelet = { extraArgs: { "rotate-server-certificates": "true" } };
  }
  const patches: Patch[] = [{ machine, cluster }];
  patches.push(...config.patches.all);
  return patches;
}

/** Patches for every control-plane node. */
export function controlPlanePatches(config: ClusterConfig): Patch[] {
  const cluster: Record<string, unknown> = {
    apiServer: { certSANs: [config.endpointHost] },
  };
  // With no workers, workloads (and the addons) must be allowed on control planes or nothing runs.
  if (config.workers.length === 0) cluster.allowSchedulingOnControlPlanes = true;
  const patches: Patch[] = [{ cluster }];
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
export function rolePatches(config: ClusterConfig, role: NodeConfig["role"]): Patch[] {
  return role === "controlplane" ? controlPlanePatches(config) : workerPatches(config);
}

/**
 * Whether a node's hostname goes into a HostnameConfig document rather than
 * machine.network.hostname. A config library of 1.12 or later generating for a 1.12 contract adds
 * `HostnameConfig {auto: stable}`, which refuses a v1alpha1 hostname beside it ("static hostname
 * is already set in v1alpha1 config"); older libraries and contracts have no such document.
 */
export function hostnameInDocument(contract: string, library: string): boolean {
  const minor = talosMinor(contract);
  return minor !== undefined && minorAtLeast(minor, "1.12") && minorAtLeast(library, "1.12");
}

/**
 * Patches for one node: identity, install target, labels and taints, then the node's own patches
 * last so a stack can override anything above. `contract` is the cluster's config contract (the
 * Talos release it was created with); `library` the minor of the plugin's config library.
 */
export function nodePatches(
  node: NodeConfig,
  installerImage: string,
  contract: string,
  library: string = PLUGIN_CONFIG_LIBRARY.minor,
): Patch[] {
  const install: Record<string, unknown> = { image: installerImage };
  // Validation guarantees exactly one of the two.
  if (node.installDisk !== undefined) install.disk = node.installDisk;
  else if (node.installDiskSelector !== undefined) install.diskSelector = node.installDiskSelector;

  const named = hostnameInDocument(contract, library);
  const machine: Record<string, unknown> = named ? { install } : { network: { hostname: node.name }, install };
  if (Object.keys(node.labels).length > 0) machine.nodeLabels = sortedRecord(node.labels);
  if (node.taints.length > 0) {
    const taints = [...node.taints].sort((a, b) => a.key.localeCompare(b.key));
    if (node.role === "controlplane") {
      // Talos taints control planes with admin credentials, on every config change.
      machine.nodeTaints = Object.fromEntries(taints.map((t) => [t.key, t.value === undefined ? t.effect : `${t.value}:${t.effect}`]));
    } else {
      // On workers Talos would use the kubelet's credentials, and NodeRestriction refuses a
      // kubelet's taint change together with the labels in the same update (talos #8193, #10935).
      // The kubelet may taint its Node when it registers it, so workers register with them; a
      // later change reaches a Node that already exists only through `kubectl taint` (docs/config.md, "Labels and taints").
      machine.kubelet = { extraConfig: { registerWithTaints: taints } };
    }
  }
  // auto must be off: the generated document's `auto: stable` and a hostname are refused together.
  const hostname: Patch[] = named ? [{ apiVersion: "v1alpha1", kind: "HostnameConfig", auto: "off", hostname: node.name }] : [];
  return [{ machine }, ...hostname, ...node.patches];
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
