// Reads the JSON of `pulumi preview --refresh --json` and says whether the stack drifted. Pure.

/** The parts of Pulumi's preview digest (pkg/display PreviewDigest) this reads. */
export interface PreviewDigest {
  steps?: { op: string; urn: string; diffReasons?: string[]; replaceReasons?: string[]; detailedDiff?: Record<string, unknown> | null }[];
  changeSummary?: Record<string, number>;
  diagnostics?: { message?: string; severity?: string }[];
}

export interface DriftedResource {
  op: string;
  /** `type::name`, the last part of the URN. */
  resource: string;
  /** Properties behind the change, when the engine names them. */
  properties: string[];
}

export interface DriftVerdict {
  stack: string;
  drifted: DriftedResource[];
}

// Steps that change nothing: reading, and refreshes that found the state as recorded.
const QUIET_OPS = new Set(["same", "read", "refresh"]);

export function driftVerdict(stack: string, digest: PreviewDigest): DriftVerdict {
  const drifted: DriftedResource[] = [];
  for (const step of digest.steps ?? []) {
    const refreshChanged = step.op === "refresh" && Object.keys(step.detailedDiff ?? {}).length > 0;
    if (QUIET_OPS.has(step.op) && !refreshChanged) continue;
    drifted.push({
      op: step.op,
      resource: urnTail(step.urn),
      properties: [...new Set([...(step.replaceReasons ?? []), ...(step.diffReasons ?? []), ...Object.keys(step.detailedDiff ?? {})])],
    });
  }
  return { stack, drifted };
}

function urnTail(urn: string): string {
  // urn:pulumi:<stack>::<project>::<type chain>::<name>
  const parts = urn.split("::");
  const name = parts.at(-1) ?? urn;
  const type = (parts.at(-2) ?? "").split("$").at(-1) ?? "";
  return `${type}::${name}`;
}

/** One line a person and a workflow read alike. */
export function verdictLine(v: DriftVerdict): string {
  if (v.drifted.length === 0) return `${v.stack}: no drift`;
  // The engine refreshes in parallel: sorted, the same drift always reads the same.
  const items = [...v.drifted]
    .sort((a, b) => a.resource.localeCompare(b.resource))
    .map((d) => `${d.op} ${d.resource}${d.properties.length > 0 ? ` (${[...d.properties].sort().join(", ")})` : ""}`);
  return `${v.stack}: drift: ${v.drifted.length} resource${v.drifted.length === 1 ? "" : "s"}: ${items.join("; ")}`;
}
