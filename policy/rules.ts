// The guard rails of every stack, as pure functions over the resources of a plan. The policy pack
// (index.ts) feeds them; the tests feed them fixtures.
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { daysLeft } from "../lib/expiry";
import { schematicId } from "../lib/schematic";
import { secretOutputsOf, TYPES } from "../lib/tokens";
import { REQUIRED_EXTENSION } from "../lib/versions";

/** What a rule needs to know of a planned resource. Unknown (preview-time) values are undefined. */
export interface PlannedResource {
  type: string;
  name: string;
  urn: string;
  props: Record<string, unknown>;
  protect: boolean;
  additionalSecretOutputs: string[];
}

/**
 * A plain copy of a resource's properties with the values not known yet (preview) left out. The
 * pack hands them over in a proxy that throws on reading an unknown value, which would turn the
 * rule into an advisory "can't run during preview" instead of judging what is known.
 */
export function knownValues(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  const read = (key: string | number): unknown => {
    try {
      return knownValues((value as Record<string | number, unknown>)[key]);
    } catch (err) {
      // The pack's UnknownValueError (not exported) carries the sentinel of the unknown value.
      if (err instanceof Error && "unknownTypeSentinel" in err) return undefined;
      throw err;
    }
  };
  if (Array.isArray(value)) return Array.from({ length: value.length }, (_, i) => read(i));
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const v = read(key);
    if (v !== undefined) copy[key] = v;
  }
  return copy;
}

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
  const expected = secretOutputsOf(r.type);
  if (expected === undefined) return undefined;
  const missing = expected.filter((o) => !r.additionalSecretOutputs.includes(o));
  if (missing.length === 0) return undefined;
  return `${r.name} must list ${missing.join(", ")} in additionalSecretOutputs: they carry cluster credentials`;
}

/** machine.install.image of a machine-config document, patch or whole (multi-document) config. */
function installImageIn(doc: unknown): string | undefined {
  const image = asRecord(asRecord(asRecord(doc)?.machine)?.install)?.image;
  return typeof image === "string" ? image : undefined;
}

/** The documents of a multi-document YAML text; undefined when it is not text or does not parse. */
function parseDocs(text: unknown): unknown[] | undefined {
  if (typeof text !== "string") return undefined;
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs) || docs.some((d) => d.errors.length > 0)) return undefined;
  return docs.map((d) => d.toJS());
}

/**
 * The install image a config apply gives its node: machine.install.image of the rendered config
 * it installs (talosnode's machineConfiguration, the program's way; the talos plugin's
 * machineConfigurationInput), then of the plugin's configPatches, which it applies on top.
 * "unknown" while what decides it is not known (a first preview).
 */
function applyInstallImage(r: PlannedResource): string | "unknown" | undefined {
  const plugin = r.type === TYPES.pluginConfigApply;
  const patches = plugin ? r.props.configPatches : undefined;
  let patched: string | undefined;
  if (Array.isArray(patches)) {
    for (const p of patches) patched = installImageIn(parseDoc(p)) ?? patched; // later patches win, as in Talos
  }
  if (patched !== undefined) return patched;
  const docs = parseDocs(plugin ? r.props.machineConfigurationInput : r.props.machineConfiguration);
  if (docs === undefined) return "unknown";
  let image: string | undefined;
  for (const d of docs) image = installImageIn(d) ?? image;
  return image;
}

/** An image a resource declares for a node: what a config apply installs, or what an upgrade installs. */
interface DeclaredImage {
  /** The resource, and the node when one resource declares several. */
  who: string;
  /** Undefined: declared with no image at all. */
  image: string | undefined;
  /** The schematic the same resource says the node should boot, when known. */
  schematicId?: string;
}

/**
 * Every install image the plan declares: each config apply's (a new node installs it), each
 * node's in the Rollout (an upgrade installs it), each NodeState's (what the node should run).
 * Values not known yet (preview) are left out.
 */
function declaredImages(resources: PlannedResource[]): DeclaredImage[] {
  const found: DeclaredImage[] = [];
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  for (const r of resources) {
    if (r.type === TYPES.configApply || r.type === TYPES.pluginConfigApply) {
      const image = applyInstallImage(r);
      if (image !== "unknown") found.push({ who: r.name, image });
    } else if (r.type === TYPES.nodeState) {
      const image = str(r.props.installerImage);
      if (image !== undefined) found.push({ who: r.name, image, schematicId: str(r.props.schematicId) });
    } else if (r.type === TYPES.rollout && Array.isArray(r.props.nodes)) {
      for (const n of r.props.nodes) {
        const node = asRecord(n);
        const image = str(node?.installerImage);
        if (node === undefined || image === undefined) continue;
        found.push({ who: `${r.name} node ${str(node.name) ?? "?"}`, image, schematicId: str(node.schematicId) });
      }
    }
  }
  return found;
}

/** Stack rule: every node installs, and is upgraded to, the factory installer of this stack's schematic. */
export function installImagesFromSchematic(resources: PlannedResource[]): string[] {
  const knownIds = resources
    .filter((r) => r.type === TYPES.schematic)
    .map((r) => schematicIdOf(r.props.schematic))
    .filter((id): id is string => id !== undefined);
  const violations: string[] = [];
  for (const { who, image, schematicId } of declaredImages(resources)) {
    if (image === undefined) {
      violations.push(`${who} sets no machine.install.image: the node would install an image without the schematic's extensions`);
      continue;
    }
    const match = /\/installer\/([0-9a-f]{64}):v\d+\.\d+\.\d+/.exec(image);
    if (!match) {
      violations.push(`${who} installs ${image}, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)`);
    } else if (knownIds.length > 0 && !knownIds.includes(match[1] as string)) {
      violations.push(`${who} installs schematic ${match[1]}, not this stack's schematic ${knownIds.join(", ")}`);
    } else if (schematicId !== undefined && schematicId !== match[1]) {
      violations.push(`${who} installs schematic ${match[1]}, but expects the node to boot schematic ${schematicId}`);
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

/** A production stack fails its preview once a credential has this many days left or fewer. */
export const PROD_EXPIRY_FAIL_DAYS = 14;

/**
 * Stack rule: in production, no client certificate or CA of the cluster has 14 days or fewer left
 * (the cluster's `credentials` output: subjects and dates, counted from notAfter at `now`). The
 * preview and `npm run drift` warn from 30 days; this stops a prod change before it locks anyone out.
 */
export function prodCredentialsExpiry(
  resources: PlannedResource[],
  now: Date,
  productionStacks: string[] = ["prod"],
  days = PROD_EXPIRY_FAIL_DAYS,
): string[] {
  const violations: string[] = [];
  for (const r of resources.filter((x) => x.type === TYPES.cluster)) {
    if (!productionStacks.includes(stackOf(r.urn))) continue;
    const credentials = r.props.credentials;
    if (!Array.isArray(credentials)) continue;
    for (const c of credentials as { name?: unknown; notAfter?: unknown }[]) {
      if (typeof c.name !== "string" || typeof c.notAfter !== "string") continue;
      const left = daysLeft(c.notAfter, now);
      if (left > days) continue;
      violations.push(
        `${r.name}: the ${c.name} ${left < 0 ? "expired on" : "expires on"} ${c.notAfter.slice(0, 10)}${left < 0 ? "" : `, in ${left} day${left === 1 ? "" : "s"}`}: ` +
          `a production stack needs more than ${days} days left on every credential; renew it first (docs/operations.md, Credentials)`,
      );
    }
  }
  return violations;
}
