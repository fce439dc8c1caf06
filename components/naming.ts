// Names of resources and images, derived from the component name so two clusters in one stack
// never collide and renaming a node shows up as a visible replacement.
import { REQUIRED_EXTENSION } from "./versions";

export const resourceNames = {
  schematic: (cluster: string) => `${cluster}-schematic`,
  secrets: (cluster: string) => `${cluster}-secrets`,
  configApply: (cluster: string, node: string) => `${cluster}-${node}`,
  nodeState: (cluster: string, node: string) => `${cluster}-${node}-state`,
  bootstrap: (cluster: string) => `${cluster}-bootstrap`,
  rollout: (cluster: string) => `${cluster}-rollout`,
  kubeconfig: (cluster: string) => `${cluster}-kubeconfig`,
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
