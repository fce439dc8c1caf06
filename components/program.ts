// The whole stack, wired: image, then cluster, then addons through the cluster's kubeconfig.
// index.ts calls this with the stack config; tests call it under mocks.
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { BaseAddons } from "./addons";
import { type NodeStatus, TalosCluster } from "./cluster";
import type { ClusterConfig } from "./config";
import { TalosImage } from "./image";

export interface StackOutputs {
  schematicId: pulumi.Output<string>;
  /** The Talos release the nodes should run (each node's NodeState compares it with what it runs). */
  talosVersion: string;
  /** The Kubernetes release the nodes' configs should carry. */
  kubernetesVersion: string;
  installerImage: string;
  isoUrl: string;
  diskImageUrl: string;
  /** Each node as declared, and what it runs as the last up or refresh read it. */
  nodes: pulumi.Output<NodeStatus[]>;
  kubeconfig: pulumi.Output<string>;
  talosconfig: pulumi.Output<string>;
  /** For disaster recovery (`talosctl gen config --with-secrets`); secret. */
  machineSecrets: pulumi.Output<unknown>;
  addons: string[];
}

export function deployCluster(config: ClusterConfig, opts?: pulumi.ComponentResourceOptions): StackOutputs {
  const name = config.clusterName;
  const stack = pulumi.getStack();
  const image = new TalosImage(
    name,
    { talosVersion: config.talosVersion, extensions: config.extensions, factoryHost: config.imageFactoryHost },
    opts,
  );
  const cluster = new TalosCluster(
    name,
    {
      config,
      installerImage: image.installerImage,
      schematicId: image.schematicId,
      snapshots: snapshotFolder(config, stack),
      dependsOn: [image.schematic],
    },
    opts,
  );

  const enabledAddons = Object.entries(config.addons).flatMap(([k, a]) => (a.enabled ? [k] : []));
  // No addons, no Kubernetes provider: a stack can run Talos alone and bring its own platform.
  if (enabledAddons.length > 0) {
    new BaseAddons(
      name,
      {
        kubeconfig: cluster.kubeconfig,
        clusterIdentifier: name,
        addons: config.addons,
        dependsOn: [cluster.bootstrap, cluster.kubeconfigResource],
        ready: {
          endpoints: readyEndpoints(config),
          nodes: config.nodes.map((n) => n.name),
          timeout: config.kubernetesReadyTimeout,
        },
      },
      opts,
    );
  }

  return {
    schematicId: image.schematicId,
    talosVersion: config.talosVersion,
    kubernetesVersion: config.kubernetesVersion,
    installerImage: image.installerImage,
    isoUrl: image.isoUrl,
    diskImageUrl: image.diskImageUrl,
    nodes: cluster.nodes,
    kubeconfig: cluster.kubeconfig,
    talosconfig: cluster.talosconfig,
    machineSecrets: pulumi.secret(cluster.secrets.machineSecrets),
    addons: enabledAddons,
  };
}

/**
 * Where etcd snapshots go: upgrade.snapshotDir, or .snapshots/<stack> beside the program (git
 * ignores it), as an absolute path so the provider does not depend on its working directory.
 */
export function snapshotFolder(config: Pick<ClusterConfig, "upgrade">, stack: string): { dir: string; prefix: string } {
  return { dir: path.resolve(config.upgrade.snapshotDir ?? path.join(".snapshots", stack)), prefix: stack };
}

/** Addresses of the API server to check besides the kubeconfig's (the endpoint): the VIP, when the endpoint is another name. */
export function readyEndpoints(config: Pick<ClusterConfig, "endpoint" | "network">): string[] {
  const vip = config.network.vip?.address;
  if (vip === undefined) return [];
  const url = `https://${vip}:6443`;
  return url === config.endpoint ? [] : [url];
}
