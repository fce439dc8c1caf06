// The guard rails of every stack, as pure functions over the resources of a plan. The policy pack
// (index.ts) feeds them; the tests feed them fixtures.
import { parse as parseYaml } from "yaml";
import { schematicId } from "../components/schematic-id";
import { REQUIRED_EXTENSION } from "../components/versions";

/** What a rule needs to know of a planned resource. Unknown (preview-time) values are undefined. */
export interface PlannedResource {
  type: string;
  name: string;
  urn: string;
  props: Record<string, unknown>;
  protect: boolean;
  additionalSecretOutputs: string[];
}

export const TYPES = {
  schematic: "talos:imagefactory/schematic:Schematic",
  secrets: "talos:machine/secrets:Secrets",
  configApply: "talos:machine/configurationApply:ConfigurationApply",
  kubeconfig: "talos:cluster/kubeconfig:Kubeconfig",
  cluster: "talos-cluster:index:TalosCluster",
} as const;

/** Outputs that carry credentials, per resource type. */
export const CREDENTIAL_OUTPUTS: Record<string, string[]> = {
  [TYPES.secrets]: ["machineSecrets", "clientConfiguration"],
  [TYPES.kubeconfig]: ["kubeconfigRaw", "kubernetesClientConfiguration", "clientConfiguration"],
};

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function parseDoc(text: unknown): unknown {
  if (typeof text !== "string") return undefined;
  try {
    return parseYaml(text);
  } catch {
    return undefined;
  }
}

/** A schematic's officialExtensions, or undefined when the schematic text is not known yet. */
function officialExtensions(schematic: unknown): string[] | undefined {
  const doc = asRecord(parseDoc(schematic));
  if (doc === undefined) return undefined;
  const list = asRecord(asRecord(doc.customization)?.systemExtensions)?.officialExtensions;
  return Array.isArray(list) ? list.filter((x): x is string => typeof x === "string") : [];
}

/**
 * The id the factory gives a schematic, derived from its text: a policy sees no resource ids.
 * Undefined when the text is unknown (preview) or holds fields the derivation does not cover.
 */
export function schematicIdOf(schematic: unknown): string | undefined {
  const doc = asRecord(parseDoc(schematic));
  if (doc === undefined || Object.keys(doc).some((k) => k !== "customization")) return undefined;
  const customization = asRecord(doc.customization) ?? {};
  if (Object.keys(customization).some((k) => k !== "systemExtensions" && k !== "extraKernelArgs")) return undefined;
  const args = customization.extraKernelArgs;
  if (args !== undefined && !(Array.isArray(args) && args.every((a) => typeof a === "string"))) return undefined;
  return schematicId({ extraKernelArgs: args as string[] | undefined, officialExtensions: officialExtensions(schematic) });
}

/** Rule: every schematic carries intel-ucode. */
export function schematicHasIntelUcode(r: PlannedResource): string | undefined {
  if (r.type !== TYPES.schematic) return undefined;
  const extensions = officialExtensions(r.props.schematic);
  if (extensions === undefined || extensions.includes(REQUIRED_EXTENSION)) return undefined;
  return `schematic ${r.name} lacks ${REQUIRED_EXTENSION}: every image must carry CPU microcode updates`;
}

/** Rule: the machine secrets (the cluster's PKI) are protected from deletion. */
export function secretsProtected(r: PlannedResource): string | undefined {
  if (r.type !== TYPES.secrets || r.protect) return undefined;
  return `machine secrets ${r.name} must be protected (protect: true): losing them loses the cluster's PKI and etcd encryption`;
}

/** Rule: outputs that carry credentials are declared secret on the resource. */
export function credentialsSecret(r: PlannedResource): string | undefined {
  const expected = CREDENTIAL_OUTPUTS[r.type];
  if (expected === undefined) return undefined;
  const missing = expected.filter((o) => !r.additionalSecretOutputs.includes(o));
  if (missing.length === 0) return undefined;
  return `${r.name} must list ${missing.join(", ")} in additionalSecretOutputs: they carry cluster credentials`;
}

/** The install image a config apply's patches set, "unknown" while the patches are not known. */
function installImage(r: PlannedResource): string | "unknown" | undefined {
  const patches = r.props.configPatches;
  if (!Array.isArray(patches) || patches.some((p) => typeof p !== "string")) return "unknown";
  let image: string | undefined;
  for (const p of patches) {
    const found = asRecord(asRecord(asRecord(parseDoc(p))?.machine)?.install)?.image;
    if (typeof found === "string") image = found; // later patches win, as in Talos
  }
  return image;
}

/** Stack rule: every node installs from the factory installer of this stack's schematic. */
export function installImagesFromSchematic(resources: PlannedResource[]): string[] {
  const knownIds = resources
    .filter((r) => r.type === TYPES.schematic)
    .map((r) => schematicIdOf(r.props.schematic))
    .filter((id): id is string => id !== undefined);
  const violations: string[] = [];
  for (const r of resources.filter((x) => x.type === TYPES.configApply)) {
    const image = installImage(r);
    if (image === "unknown") continue;
    if (image === undefined) {
      violations.push(`${r.name} sets no machine.install.image: the node would install an image without the schematic's extensions`);
      continue;
    }
    const match = /\/installer\/([0-9a-f]{64}):v\d+\.\d+\.\d+/.exec(image);
    if (!match) {
      violations.push(
        `${r.name} installs ${image}, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)`,
      );
    } else if (knownIds.length > 0 && !knownIds.includes(match[1] as string)) {
      violations.push(`${r.name} installs schematic ${match[1]}, not this stack's schematic ${knownIds.join(", ")}`);
    }
  }
  return violations;
}

/** The stack name in a URN: urn:pulumi:<stack>::<project>::... */
export function stackOf(urn: string): string {
  return urn.split("::")[0]?.split(":").at(-1) ?? "";
}

/** Stack rule: production runs an odd number, at least three, of control planes. */
export function prodControlPlaneQuorum(resources: PlannedResource[], productionStacks: string[] = ["prod"]): string[] {
  const violations: string[] = [];
  for (const r of resources.filter((x) => x.type === TYPES.cluster)) {
    if (!productionStacks.includes(stackOf(r.urn))) continue;
    const cps = r.props.controlPlanes;
    if (!Array.isArray(cps)) continue;
    if (cps.length < 3 || cps.length % 2 === 0) {
      violations.push(
        `${r.name} has ${cps.length} control plane${cps.length === 1 ? "" : "s"}; a production stack needs an odd number, at least 3, for etcd quorum`,
      );
    }
  }
  return violations;
}
