// Names of resources and images, derived from the component name so two clusters in one stack
// never collide and renaming a node shows up as a visible replacement.
import { REQUIRED_EXTENSION } from "./versions";

export const resourceNames = {
  schematic: (cluster: string) => `${cluster}-schematic`,
  secrets: (cluster: string) => `${cluster}-secrets`,
  reachable: (cluster: string, node: string) => `${cluster}-${node}-reachable`,
  configApply: (cluster: string, node: string) => `${cluster}-${node}`,
  nodeState: (cluster: string, node: string) => `${cluster}-${node}-state`,
  bootstrap: (cluster: string) => `${cluster}-bootstrap`,
  rollout: (cluster: string) => `${cluster}-rollout`,
  recovery: (cluster: string) => `${cluster}-etcd-recovery`,
  credentials: (cluster: string) => `${cluster}-credentials`,
  k8sProvider: (cluster: string) => `${cluster}-k8s`,
  ready: (cluster: string, stage: "api-server" | "nodes") => `${cluster}-${stage}-ready`,
  addon: (cluster: string, addon: string) => `${cluster}-${addon}`,
};

/**
 * The official extensions a schematic holds: intel-ucode always, plus the stack's extras, sorted
 * and de-duplicated. The factory hashes the schematic text, so order must not leak into the id.
 */
export function schematicExtensions(extra: readonly string[]): string[] {
  return [...new Set([REQUIRED_EXTENSION, ...extra])].sort();
}

/** `<factory>/installer/<schematic id>:<talos version>`, the image every node installs from. */
export function installerImage(factoryHost: string, schematicId: string, talosVersion: string): string {
  return `${factoryHost}/installer/${schematicId}:${talosVersion}`;
}

/** Boot media a person fetches to boot a new machine into maintenance mode. */
export function bootMediaUrls(factoryHost: string, schematicId: string, talosVersion: string): { iso: string; diskImage: string } {
  const base = `https://${factoryHost}/image/${schematicId}/${talosVersion}`;
  return { iso: `${base}/metal-amd64.iso`, diskImage: `${base}/metal-amd64.raw.zst` };
}

/** "1 control plane", "3 control planes": a count with its noun in the right number. */
export function counted(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/**
 * The candidate a misspelt word most likely meant: the closest by edits (a swap of two neighbours
 * counts as one), within a quarter of its length and at most 3; undefined when none is that close.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.floor(word.length / 4)));
  let best: { name: string; distance: number } | undefined;
  for (const name of candidates) {
    if (name === word) continue;
    const distance = Math.max(1, editDistance(word.toLowerCase(), name.toLowerCase())); // case alone is one edit
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}
