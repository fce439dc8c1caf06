// Machine-config patch builders: plain objects in, plain objects out, serialised once at the edge.
// Patches are strategic-merge patches in Talos' v1alpha1 machine config shape.
import type { ClusterConfig, NodeConfig, Patch } from "./config";

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
    patches.push({
      machine: { network: { interfaces: [{ interface: vip.interface, dhcp: true, vip: { ip: vip.address } }] } },
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
 * Patches for one node: identity, install target, labels and taints, then the node's own patches
 * last so a stack can override anything above.
 */
export function nodePatches(node: NodeConfig, installerImage: string): Patch[] {
  const install: Record<string, unknown> = { image: installerImage };
  // Validation guarantees exactly one of the two.
  if (node.installDisk !== undefined) install.disk = node.installDisk;
  else if (node.installDiskSelector !== undefined) install.diskSelector = node.installDiskSelector;

  const machine: Record<string, unknown> = {
    network: { hostname: node.name },
    install,
  };
  if (Object.keys(node.labels).length > 0) machine.nodeLabels = sortedRecord(node.labels);
  if (node.taints.length > 0) {
    machine.nodeTaints = Object.fromEntries(
      [...node.taints]
        .sort((a, b) => a.key.localeCompare(b.key))
        .map((t) => [t.key, t.value === undefined ? t.effect : `${t.value}:${t.effect}`]),
    );
  }
  return [{ machine }, ...node.patches];
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
