// The Image Factory's schematic id, computed offline: hex sha256 of the schematic re-marshalled as
// YAML with a 4-space indent (image-factory pkg/schematic). Pure; also used by the policy pack.
import { createHash } from "node:crypto";
import { schematicExtensions } from "./naming";

// Strings YAML writes as plain scalars, so the canonical text is known without a YAML encoder.
const PLAIN = /^[A-Za-z0-9][A-Za-z0-9._/=,+-]*$/;

/** Fields of a schematic this project writes; anything else makes the id unknown here. */
export interface SchematicFields {
  extraKernelArgs?: string[];
  officialExtensions?: string[];
}

/** The canonical text the factory hashes, or undefined when it holds values this cannot encode. */
export function canonicalSchematic(fields: SchematicFields): string | undefined {
  const lines: string[] = [];
  const list = (indent: number, items: string[]) => items.map((i) => `${" ".repeat(indent)}- ${i}`);
  const args = fields.extraKernelArgs ?? [];
  const exts = fields.officialExtensions ?? [];
  if (![...args, ...exts].every((s) => PLAIN.test(s))) return undefined;
  if (args.length > 0) lines.push("    extraKernelArgs:", ...list(8, args));
  if (exts.length > 0) lines.push("    systemExtensions:", "        officialExtensions:", ...list(12, exts));
  return lines.length === 0 ? "customization: {}\n" : `customization:\n${lines.join("\n")}\n`;
}

/** The schematic id the factory will return, when the fields can be encoded here. */
export function schematicId(fields: SchematicFields): string | undefined {
  const text = canonicalSchematic(fields);
  return text === undefined ? undefined : createHash("sha256").update(text).digest("hex");
}

/** The schematic document sent to the factory, with its id as the factory derives it. */
export function schematicFor(extensions: readonly string[]): { text: string; id: string } {
  const officialExtensions = schematicExtensions(extensions);
  const text = canonicalSchematic({ officialExtensions });
  const id = schematicId({ officialExtensions });
  // parseConfig only admits catalogue names, which always encode; this guards direct callers.
  if (text === undefined || id === undefined) throw new Error(`cannot encode schematic for ${officialExtensions.join(", ")}`);
  return { text, id };
}
