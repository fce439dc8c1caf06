// Where the stack config comes from: the map Pulumi hands a running program, or a stack file read
// without the engine. Both give the same raw map, keyed without the project prefix. Pure.
import { parse as parseYaml } from "yaml";

/** Config namespace: the project name in Pulumi.yaml. */
export const PROJECT = "talos-cluster";

/**
 * The talos plugin's own setting: the Image Factory it registers the schematic with. The one key
 * of another namespace the program reads; it rides in the raw map under its full name.
 */
export const FACTORY_URL_KEY = "talos:imageFactoryUrl";

/** `nodes[3] (wk-2)`: a node by its place in the list and by its name, as a user looks for it. */
export function nodeRef(index: number, name: string | undefined): string {
  return name === undefined || name === "" ? `nodes[${index}]` : `nodes[${index}] (${name})`;
}

/**
 * Pulumi hands every config value to the program as a string; structured values (lists, maps)
 * arrive as JSON text. Keys come as "project:key".
 */
export function configFromPulumi(all: Record<string, string>): Record<string, unknown> {
  return projectKeys(all, parseMaybeJson);
}

/**
 * The entries of a "project:key" map that belong to this project, keyed without the prefix, and
 * the talos plugin's factory URL under its full key.
 */
function projectKeys<T>(all: Record<string, T>, value: (v: T) => unknown): Record<string, unknown> {
  const prefix = `${PROJECT}:`;
  return Object.fromEntries(
    Object.entries(all)
      .filter(([fullKey]) => fullKey.startsWith(prefix) || fullKey === FACTORY_URL_KEY)
      .map(([fullKey, v]) => [fullKey === FACTORY_URL_KEY ? fullKey : fullKey.slice(prefix.length), value(v)]),
  );
}

/**
 * The project's keys from a stack file (Pulumi.<stack>.yaml), for validating a stack without the
 * engine. Values are already structured there; secure values stay opaque `{ secure }` objects.
 */
export function configFromStackFile(text: string): Record<string, unknown> {
  const doc: unknown = parseYaml(text);
  const config = isRecord(doc) && isRecord(doc.config) ? doc.config : {};
  return projectKeys(config, (v) => v);
}

function parseMaybeJson(value: string): unknown {
  const trimmed = value.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return value;
    }
  }
  if (trimmed === "true" || trimmed === "false") return trimmed === "true";
  return value;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
