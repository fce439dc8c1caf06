// What the TalosCluster component declares, computed from the validated config as plain data:
// which node gets which patches, who bootstraps, which endpoints the talosconfig lists.
import type { ClusterConfig, NodeConfig, Role } from "./config/schema";
import { resourceNames } from "./naming";
import { clusterPatches, nodePatches, rolePatches, serialisePatches } from "./patches";

export interface NodePlan {
  /** The node as the stack declares it, for its own patches. */
  node: NodeConfig;
  name: string;
  address: string;
  role: Role;
  /** Name of the node's ConfigurationApply; changes only when the node is renamed. */
  resourceName: string;
}

export interface ClusterPlan {
  /** Patches per role for machine.getConfiguration: cluster-wide first, then the role's. */
  roleConfigPatches: Record<Role, string[]>;
  nodes: NodePlan[];
  /**
   * The node that bootstraps etcd: the first control plane in the stack's order. It must stay
   * fixed: bootstrapping a second node would split etcd into two clusters.
   */
  bootstrapNode: NodePlan;
  /**
   * talosconfig endpoints: the control planes, which proxy to any node. No default nodes: with a
   * node list, talosctl upgrade, reboot or reset without -n would hit every listed node at once.
   */
  talosconfig: { endpoints: string[] };
}

export function planCluster(name: string, config: ClusterConfig): ClusterPlan {
  const nodes = config.nodes.map((n) => ({
    node: n,
    name: n.name,
    address: n.address,
    role: n.role,
    resourceName: resourceNames.configApply(name, n.name),
  }));
  const bootstrapNode = nodes.find((n) => n.role === "controlplane");
  // parseConfig refuses a cluster without a control plane; this guards direct callers.
  if (bootstrapNode === undefined) throw new Error(`cluster ${name} has no control plane to bootstrap`);
  const base = clusterPatches(config);
  return {
    roleConfigPatches: {
      controlplane: serialisePatches([...base, ...rolePatches(config, "controlplane")]),
      worker: serialisePatches([...base, ...rolePatches(config, "worker")]),
    },
    nodes,
    bootstrapNode,
    talosconfig: {
      endpoints: nodes.filter((n) => n.role === "controlplane").map((n) => n.address),
    },
  };
}

/** The patches a node's ConfigurationApply carries, for the installer image and config contract. */
export function nodeConfigPatches(node: NodeConfig, installerImage: string, contract: string): string[] {
  return serialisePatches(nodePatches(node, installerImage, contract));
}

/**
 * How long each Talos operation keeps retrying an unreachable node before it fails. The provider
 * retries every error but a rejected config, so this is how long a dead node stalls a run.
 * Every key of each resource's timeouts is set: the bridge refuses to store a timeouts object
 * with an unset key ("recovered raw state does not byte-for-byte match").
 */
export function operationTimeouts(config: Pick<ClusterConfig, "nodeTimeout" | "bootstrapTimeout">) {
  const node = config.nodeTimeout;
  return {
    apply: { create: node, update: node, delete: node },
    // The bootstrap waits for the first control plane to finish installing and rebooting.
    bootstrap: { create: config.bootstrapTimeout },
    kubeconfig: { create: node, update: node },
  };
}
