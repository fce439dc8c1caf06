// The whole stack, wired: image, then cluster, then addons through the cluster's kubeconfig.
// index.ts calls this with the stack config; tests call it under mocks.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../lib/config/parse";
import type { ClusterConfig } from "../lib/config/schema";
import { PROJECT } from "../lib/config/source";
import type { CertificateExpiry } from "../lib/expiry";
import { imageSource } from "../lib/image";
import { readyEndpoints } from "../lib/plan";
import { BaseAddons } from "./addons";
import { type NodeStatus, TalosCluster } from "./cluster";
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
  /** Subject, end and days left of every certificate the stack holds; not secret. */
  credentials: pulumi.Output<CertificateExpiry[]>;
}

export function deployCluster(config: ClusterConfig, opts?: pulumi.ComponentResourceOptions): StackOutputs {
  const name = config.clusterName;
  const stack = pulumi.getStack();
  // First: a refused snapshot folder stops the program before it declares anything.
  const snapshots = snapshotFolder(config, stack);
  const recoverSnapshot = recoverySnapshot(config);
  const image = new TalosImage(name, imageSource(config), opts);
  const cluster = new TalosCluster(
    name,
    {
      config,
      installerImage: image.installerImage,
      schematicId: image.schematicId,
      snapshots,
      recoverSnapshot,
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
    credentials: cluster.credentials,
  };
}

/** What decides where snapshots go: the environment, the user's home and the program's folder. */
export interface SnapshotPlace {
  env: Readonly<Record<string, string | undefined>>;
  home: string;
  cwd: string;
}

const HERE: SnapshotPlace = { env: process.env, home: os.homedir(), cwd: process.cwd() };

/**
 * Where etcd snapshots go, as an absolute path so the provider does not depend on its working
 * directory: upgrade.snapshotDir (relative to the program), or by default the user's state folder,
 * `$XDG_STATE_HOME/talos-cluster/snapshots/<stack>` (`~/.local/state/...` without it), outside
 * any checkout: CI's `actions/checkout` cleans the workspace (`git clean -ffdx`) before each job,
 * ignored files included. With `CI` set, a folder inside the repository is refused for that reason.
 */
export function snapshotFolder(
  config: Pick<ClusterConfig, "upgrade">,
  stack: string,
  place: SnapshotPlace = HERE,
): { dir: string; prefix: string } {
  const set = config.upgrade.snapshotDir;
  const stateHome = place.env.XDG_STATE_HOME;
  // The XDG spec: a relative XDG_STATE_HOME is invalid and ignored.
  const base = stateHome !== undefined && path.isAbsolute(stateHome) ? stateHome : path.join(place.home, ".local", "state");
  const dir = set === undefined ? path.join(base, "talos-cluster", "snapshots", stack) : path.resolve(place.cwd, set);
  if (place.env.CI !== undefined && place.env.CI !== "" && place.env.CI !== "false") {
    const repo = repositoryHolding(dir, place.cwd);
    if (repo !== undefined) {
      const where = set === undefined ? `unset, so snapshots would go to ${dir} (under XDG_STATE_HOME or HOME), which` : `${dir}`;
      throw new ConfigError([
        `${PROJECT}:upgrade.snapshotDir: ${where} is inside the repository (${repo}) and CI is set: the next job's checkout cleans the workspace and would delete the snapshots; set upgrade.snapshotDir to an absolute folder outside any checkout, e.g. /var/lib/talos-cluster/snapshots/${stack}`,
      ]);
    }
  }
  return { dir, prefix: stack };
}

/**
 * The snapshot `recover.snapshot` names, as an absolute path (relative ones are read from the
 * program's folder), or undefined without the key. A path where no file is stops the program
 * naming the key; the provider checks the file itself (size, sha256 trailer) in the preview.
 */
export function recoverySnapshot(config: Pick<ClusterConfig, "recover">, cwd: string = process.cwd()): string | undefined {
  const set = config.recover?.snapshot;
  if (set === undefined) return undefined;
  const file = path.resolve(cwd, set);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    throw new ConfigError([
      `${PROJECT}:recover.snapshot: ${JSON.stringify(set)} (${file}) is not a file: name an etcd snapshot, e.g. one the rollout wrote to upgrade.snapshotDir, or remove the key`,
    ]);
  }
  return file;
}

/**
 * The repository folder `dir` lies in (it or below), if any: the folder holding Pulumi.yaml, or
 * the git work tree, found upwards from the program's folder.
 */
function repositoryHolding(dir: string, cwd: string): string | undefined {
  const roots = [upwards(cwd, "Pulumi.yaml"), upwards(cwd, ".git")].filter((r): r is string => r !== undefined);
  const inside = (root: string) => {
    const rel = path.relative(root, dir);
    return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
  };
  return roots.find(inside);
}

/** The nearest folder, from `start` up, that holds `entry`. */
function upwards(start: string, entry: string): string | undefined {
  let at = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(at, entry))) return at;
    const parent = path.dirname(at);
    if (parent === at) return undefined;
    at = parent;
  }
}
