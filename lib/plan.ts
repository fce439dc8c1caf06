// One plan of the cluster, read by TalosCluster (what it declares), the validator (what Talos
// judges) and the tests: per node its role, address, installer image and every patch in the
// order the program applies it, each with the stack key it came from; who bootstraps; which
// endpoints the talosconfig lists. Plain data computed from the validated config.
import type { ClusterConfig, NodeConfig, Patch, Role } from "./config/schema";
import { nodeRef, PROJECT } from "./config/source";
import { imageSource, planImage } from "./image";
import { resourceNames } from "./naming";
import { clusterPatches, nodePatches, rolePatches } from "./patches";

export interface KeyedPatch {
  /** The stack key a user fixes, or, in parentheses, what of the program's own it is. */
  key: string;
  /** One patch object as JSON text, exactly as the program hands it to the config library. */
  patch: string;
}

export interface NodePlan {
  /** The node as the stack declares it. */
  node: NodeConfig;
  name: string;
  address: string;
  role: Role;
  /** Name of the node's ConfigurationApply; changes only when the node is renamed. */
  resourceName: string;
  /** The installer image the node installs and is upgraded to. */
  installerImage: string;
  /**
   * Every patch of the node's config in apply order: cluster-wide, the role's, then the node's,
   * the program's own before the stack's at each level. Their shape depends on the cluster's config
   * contract (the Talos release it was created with), known to TalosCluster only as an output.
   */
  patches(contract: string): KeyedPatch[];
}

export interface ClusterPlan {
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

/**
 * The program's patches (built-ins first) with the stack key of each: the last `user.length` come
 * from the stack under `userKey`, the ones before are the program's own.
 */
function keyed(patches: Patch[], user: Patch[], userKey: string, builtin: string): KeyedPatch[] {
  const own = patches.length - user.length;
  return patches.map((p, i) => ({ key: i < own ? builtin : `${userKey}[${i - own}]`, patch: JSON.stringify(p) }));
}

/**
 * The cluster `name` as the program declares it. `installerImage` is the stack's factory installer
 * (lib/image.ts) unless given: TalosCluster passes the one TalosImage declared, from the same derivation.
 */
export function planCluster(
  name: string,
  config: ClusterConfig,
  installerImage = planImage(imageSource(config)).installerImage,
): ClusterPlan {
  // The cluster's and each role's part depend on the contract too (the config's shape), not on the node.
  const cluster = (contract: string) =>
    keyed(clusterPatches(config, contract), config.patches.all, `${PROJECT}:patches.all`, "(program: cluster settings)");
  const role = (r: Role, contract: string) =>
    keyed(rolePatches(config, r, contract), config.patches[r], `${PROJECT}:patches.${r}`, `(program: ${r} settings)`);
  const nodes = config.nodes.map(
    (n, i): NodePlan => ({
      node: n,
      name: n.name,
      address: n.address,
      role: n.role,
      resourceName: resourceNames.configApply(name, n.name),
      installerImage,
      patches: (contract) => [
        ...cluster(contract),
        ...role(n.role, contract),
        ...keyed(
          nodePatches(n, installerImage, contract),
          n.patches,
          `${PROJECT}:${nodeRef(i, n.name)}.patches`,
          `(program: node ${n.name})`,
        ),
      ],
    }),
  );
  const bootstrapNode = nodes.find((n) => n.role === "controlplane");
  // parseConfig refuses a cluster without a control plane; this guards direct callers.
  if (bootstrapNode === undefined) throw new Error(`cluster ${name} has no control plane to bootstrap`);
  return {
    nodes,
    bootstrapNode,
    talosconfig: {
      endpoints: nodes.filter((n) => n.role === "controlplane").map((n) => n.address),
    },
  };
}

/**
 * How long each talos plugin operation keeps retrying an unreachable node before it fails. The
 * plugin retries every error but a rejected config, so this is how long a dead node stalls a run.
 * (The first config apply is talosnode's and takes the node timeout as its `timeout`.)
 * Every key of each resource's timeouts is set: the bridge refuses to store a timeouts object
 * with an unset key ("recovered raw state does not byte-for-byte match").
 */
export function operationTimeouts(config: Pick<ClusterConfig, "bootstrapTimeout">) {
  return {
    // The bootstrap waits for the first control plane to finish installing and rebooting.
    bootstrap: { create: config.bootstrapTimeout },
  };
}

/** Addresses of the API server to check besides the kubeconfig's (the endpoint): the VIP, when the endpoint is another name. */
export function readyEndpoints(config: Pick<ClusterConfig, "endpoint" | "network">): string[] {
  const vip = config.network.vip?.address;
  if (vip === undefined) return [];
  const url = `https://${vip}:6443`;
  return url === config.endpoint ? [] : [url];
}
