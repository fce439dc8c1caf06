// `npm run drift -- -s dev [-s prod] [--target URN ...] [--nodes]`: refresh-preview each stack (or
// only the targeted resources), print one verdict line per stack, exit 1 on drift (2 when the
// preview itself fails). The drift workflow runs exactly this. With --nodes it also reads every node
// (nodecheck, over mutual TLS with the stack's talosconfig): a change made on a node itself is
// invisible to the preview, since the talos provider never reads a node back.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { driftVerdict, nodeExpectations, type PreviewDigest, verdictLine } from "./drift-verdict";

function parseArgs(argv: string[]): { stacks: string[]; targets: string[]; nodes: boolean; unknown: string[] } {
  let nodes = false;
  const stacks: string[] = [];
  const targets: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const next = argv[i + 1];
    if ((arg === "-s" || arg === "--stack") && next !== undefined) stacks.push(argv[++i] as string);
    else if (arg.startsWith("--stack=")) stacks.push(arg.slice("--stack=".length));
    else if ((arg === "-t" || arg === "--target") && next !== undefined) targets.push(argv[++i] as string);
    else if (arg.startsWith("--target=")) targets.push(arg.slice("--target=".length));
    else if (arg === "--nodes") nodes = true;
    else if (arg !== "--") unknown.push(arg);
  }
  return { stacks, targets, nodes, unknown };
}

const { stacks, targets, nodes: checkNodes, unknown } = parseArgs(process.argv.slice(2));
if (stacks.length === 0 || unknown.length > 0) {
  if (unknown.length > 0) console.error(`unknown argument${unknown.length === 1 ? "" : "s"}: ${unknown.join(" ")}`);
  console.error("usage: npm run drift -- -s <stack> [-s <stack> ...] [--target <urn> ...] [--nodes]");
  process.exit(2);
}
const pulumi = process.env.PULUMI_BIN ?? "pulumi";
const targetArgs = targets.flatMap((t) => ["--target", t]);
let worst = 0;
for (const stack of stacks) {
  const run = spawnSync(pulumi, ["preview", "--refresh", "--json", "--non-interactive", "--stack", stack, ...targetArgs], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  let digest: PreviewDigest | undefined;
  try {
    digest = JSON.parse(run.stdout) as PreviewDigest;
  } catch {
    digest = undefined;
  }
  if (run.status !== 0 || digest === undefined) {
    const errors = (digest?.diagnostics ?? []).filter((d) => d.severity === "error").map((d) => d.message?.trim());
    console.log(
      `${stack}: preview failed: ${errors.join(" | ") || run.stderr.trim().split("\n").slice(-3).join(" | ") || `exit ${run.status}`}`,
    );
    worst = 2;
    continue;
  }
  const verdict = driftVerdict(stack, digest);
  console.log(verdictLine(verdict));
  if (verdict.drifted.length > 0) worst = Math.max(worst, 1);
  if (checkNodes) worst = Math.max(worst, nodeDrift(stack));
}
process.exit(worst);

/** Runs nodecheck against the stack's nodes; returns its exit status (0, 1 drift, 2 unreadable). */
function nodeDrift(stack: string): number {
  const out = spawnSync(pulumi, ["stack", "output", "--json", "--show-secrets", "--non-interactive", "--stack", stack], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  let outputs: Record<string, unknown> = {};
  try {
    outputs = JSON.parse(out.stdout) as Record<string, unknown>;
  } catch {
    console.log(`${stack}: nodes: cannot read the stack's outputs: ${out.stderr.trim() || `exit ${out.status}`}`);
    return 2;
  }
  const expect = nodeExpectations(outputs);
  if ("missing" in expect) {
    console.log(`${stack}: nodes: the stack has no ${expect.missing.join(", ")} output; run pulumi up first`);
    return 2;
  }
  // The talosconfig holds the admin key: a private file, removed right after.
  const dir = mkdtempSync(join(tmpdir(), "drift-nodes-"));
  try {
    writeFileSync(join(dir, "talosconfig"), String(outputs.talosconfig), { mode: 0o600 });
    writeFileSync(join(dir, "expect.json"), JSON.stringify(expect));
    const check = spawnSync(
      process.env.NODECHECK_BIN ?? "nodecheck",
      ["-talosconfig", join(dir, "talosconfig"), "-expect", join(dir, "expect.json")],
      { encoding: "utf8" },
    );
    for (const line of check.stdout.split("\n").filter((l) => l !== "")) console.log(`${stack}: ${line}`);
    if (check.status === null || check.error) {
      console.log(`${stack}: nodes: nodecheck did not run: ${check.error?.message ?? check.stderr.trim()}`);
      return 2;
    }
    if (check.stderr.trim() !== "") console.log(`${stack}: nodes: ${check.stderr.trim()}`);
    return check.status;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
