// Stack config, parsed: the raw map (source.ts) read section by section with the schema
// (schema.ts), then the cross-field rules (rules.ts) on the sections that parsed, so one run
// reports every problem. Returns one typed object, or throws ConfigError listing them all. Pure.
import { parseAllDocuments } from "yaml";
import { closest } from "../naming";
import { crossFieldRules, factoryHost, type ParsedNode, type Sections } from "./rules";
import {
  type ClusterConfig,
  keysAt,
  type NodeConfig,
  nodeSchema,
  normaliseEndpoint,
  type ParsedConfig,
  type StackInput,
  stackSchema,
} from "./schema";
import { FACTORY_URL_KEY, nodeRef, PROJECT } from "./source";

/** Thrown with every problem in the stack config; its message lists them one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `The stack config has ${problems.length} problem${problems.length === 1 ? "" : "s"}; nothing was created or changed:\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/**
 * A stack key as a user finds it: `talos-cluster:network.vip.address`; a node by its place and
 * its name, `talos-cluster:nodes[3] (wk-2).installDisk` (not for its own name, which the message quotes).
 */
function keyPath(path: readonly PropertyKey[], raw: Record<string, unknown>): string {
  let out = PROJECT;
  path.forEach((seg, i) => {
    if (typeof seg === "number") {
      const node = i === 1 && path[0] === "nodes" && Array.isArray(raw.nodes) ? raw.nodes[seg] : undefined;
      const name = isRecord(node) && typeof node.name === "string" && path[2] !== "name" ? node.name : undefined;
      out += i === 1 && path[0] === "nodes" ? nodeRef(seg, name).slice("nodes".length) : `[${seg}]`;
    } else out += i === 0 ? `:${String(seg)}` : `.${String(seg)}`;
  });
  return out;
}

/** A schema's issues, each as `key: message`; an unknown key with the key most likely meant. */
function describeIssues(
  issues: readonly { code: string; path: PropertyKey[]; message: string; keys?: string[] }[],
  prefix: readonly PropertyKey[],
  raw: Record<string, unknown>,
  problems: string[],
): void {
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys ?? []) problems.push(unknownKey([...path, key], raw));
    } else {
      problems.push(`${keyPath(path, raw)}: ${issue.message}`);
    }
  }
}

function unknownKey(path: readonly PropertyKey[], raw: Record<string, unknown>): string {
  const key = path.at(-1);
  const meant = typeof key === "string" ? closest(key, keysAt(stackSchema, path.slice(0, -1))) : undefined;
  return `${keyPath(path, raw)}: unknown key; ${meant === undefined ? "check its spelling against the config table in docs/config.md" : `did you mean ${meant}?`}`;
}

type Shape = typeof stackSchema.shape;

/**
 * Each top-level key read on its own, and each node on its own, so one refused part leaves the
 * others typed for the cross-field rules.
 */
function parseSections(raw: Record<string, unknown>, problems: string[]): Sections {
  const sections: Record<string, unknown> = {};
  let nodes: ParsedNode[] = [];
  for (const key of Object.keys(stackSchema.shape) as (keyof Shape)[]) {
    const value = raw[key];
    if (key === "nodes" && Array.isArray(value)) {
      nodes = value.map((node, index) => parseNode(node, index, raw, problems));
      continue;
    }
    const result = stackSchema.shape[key].safeParse(value);
    if (result.success) sections[key] = result.data;
    else describeIssues(result.error.issues, [key], raw, problems);
  }
  for (const key of Object.keys(raw)) if (!(key in stackSchema.shape) && key !== FACTORY_URL_KEY) problems.push(unknownKey([key], raw));
  // Each section was read by its own schema, the stack's shape for that key.
  return {
    ...(sections as Partial<Omit<StackInput, "nodes">>),
    nodes,
    nodeList: Array.isArray(raw.nodes),
    factoryUrl: raw[FACTORY_URL_KEY],
    factoryHostGiven: raw.imageFactoryHost !== undefined,
  };
}

type NodeShape = typeof nodeSchema.shape;

/** One node: whole when it parses, else each field on its own, so the rules still see its name and role. */
function parseNode(node: unknown, index: number, raw: Record<string, unknown>, problems: string[]): ParsedNode {
  const whole = nodeSchema.safeParse(node);
  if (whole.success) return { index, node: whole.data, refused: new Set(), complete: whole.data };
  describeIssues(whole.error.issues, ["nodes", index], raw, problems);
  const fields: Record<string, unknown> = {};
  const refused = new Set<string>();
  const given = isRecord(node) ? node : {};
  for (const field of Object.keys(nodeSchema.shape) as (keyof NodeShape)[]) {
    const result = nodeSchema.shape[field].safeParse(given[field]);
    if (result.success) fields[field] = result.data;
    else refused.add(field);
  }
  // Each field was read by the node schema's own field schema.
  return { index, node: fields as Partial<NodeConfig>, refused };
}

/** Validates the raw stack config; throws ConfigError listing every problem at once. */
export function parseConfig(given: Record<string, unknown>): ParsedConfig {
  const problems: string[] = [];
  const warnings: string[] = [];
  const raw = withPatchTexts(given, problems);
  const sections = parseSections(raw, problems);
  sections.imageFactoryHost = factoryHost(sections, problems);
  crossFieldRules(sections, problems, warnings);
  if (problems.length > 0) throw new ConfigError(problems);

  // No problem: every section parsed, every node with it.
  const input = { ...sections, nodes: sections.nodes.flatMap((n) => (n.complete === undefined ? [] : [n.complete])) } as StackInput;
  const endpoint = normaliseEndpoint(input.endpoint);
  // The schema already refused a malformed endpoint; this only narrows the type.
  if (endpoint === undefined) throw new ConfigError([`${PROJECT}:endpoint: ${JSON.stringify(input.endpoint)} is not a valid endpoint`]);
  const config: ClusterConfig = {
    ...input,
    endpoint: endpoint.url,
    endpointHost: endpoint.host,
    controlPlanes: input.nodes.filter((n) => n.role === "controlplane"),
    workers: input.nodes.filter((n) => n.role === "worker"),
  };
  return { config, warnings };
}

/**
 * A patch may be given as YAML text (`- |` in a stack file), as `talosctl --config-patch` takes it:
 * each such text becomes the mapping it holds, so every later check sees it as any other patch.
 * Text with several documents, or that is not a mapping, is refused with the form to use.
 */
function withPatchTexts(raw: Record<string, unknown>, problems: string[]): Record<string, unknown> {
  const parse = (list: unknown, key: string): unknown => {
    if (!Array.isArray(list)) return list;
    return list.map((patch, i) => {
      if (typeof patch !== "string") return patch;
      const docs = parseAllDocuments(patch);
      const doc = docs[0];
      if (docs.length !== 1 || doc === undefined || doc.errors.length > 0) {
        problems.push(
          `${PROJECT}:${key}[${i}]: ${docs.length > 1 ? `holds ${docs.length} YAML documents; give each its own list entry` : `is not valid YAML${doc?.errors[0] ? ` (${doc.errors[0].message.split("\n")[0]})` : ""}`}`,
        );
        return {}; // refused above; the schema need not say it again
      }
      const value: unknown = doc.toJS();
      if (!isRecord(value)) {
        problems.push(
          `${PROJECT}:${key}[${i}]: must be a machine-config patch: a mapping such as "machine: {sysctls: {...}}", as YAML text or nested YAML`,
        );
        return {};
      }
      return value;
    });
  };
  const out: Record<string, unknown> = { ...raw };
  if (isRecord(raw.patches)) {
    const groups: Record<string, unknown> = { ...raw.patches };
    for (const group of ["all", "controlplane", "worker"]) groups[group] = parse(groups[group], `patches.${group}`);
    out.patches = groups;
  }
  if (Array.isArray(raw.nodes)) {
    out.nodes = raw.nodes.map((node, i) =>
      isRecord(node)
        ? { ...node, patches: parse(node.patches, `${nodeRef(i, typeof node.name === "string" ? node.name : undefined)}.patches`) }
        : node,
    );
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
