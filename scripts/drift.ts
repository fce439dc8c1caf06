// `npm run drift -- -s dev [-s prod] [--target URN ...]`: refresh-preview each stack (or only the
// targeted resources), print one verdict line per stack, exit 1 on drift (2 when the preview itself
// fails). The drift workflow runs exactly this. The refresh reads every node too (the project's
// talosnode provider), so a change made on a node itself shows as its NodeState drifting.
import { spawnSync } from "node:child_process";
import { type CertificateExpiry, expiryWarnings } from "../lib/expiry";
import { driftVerdict, type PreviewDigest, verdictLine } from "./drift-verdict";

function parseArgs(argv: string[]): { stacks: string[]; targets: string[]; unknown: string[] } {
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
    else if (arg !== "--") unknown.push(arg);
  }
  return { stacks, targets, unknown };
}

const { stacks, targets, unknown } = parseArgs(process.argv.slice(2));
if (stacks.length === 0 || unknown.length > 0) {
  if (unknown.length > 0) console.error(`unknown argument${unknown.length === 1 ? "" : "s"}: ${unknown.join(" ")}`);
  console.error("usage: npm run drift -- -s <stack> [-s <stack> ...] [--target <urn> ...]");
  process.exit(2);
}
const pulumi = process.env.PULUMI_BIN ?? "pulumi";

/** The stack's `credentials` output as the last up left it; none before the first up. */
function credentialsOf(stack: string): CertificateExpiry[] {
  const run = spawnSync(pulumi, ["stack", "output", "credentials", "--json", "--stack", stack], { encoding: "utf8" });
  if (run.status !== 0) return [];
  try {
    const list = JSON.parse(run.stdout) as unknown;
    return Array.isArray(list) ? (list as CertificateExpiry[]) : [];
  } catch {
    return [];
  }
}
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
  // A certificate about to expire fails the check too: after it, every run of the stack fails.
  const expiring = expiryWarnings(credentialsOf(stack), new Date());
  for (const warning of expiring) console.log(`${stack}: credentials: ${warning}`);
  if (expiring.length > 0) worst = Math.max(worst, 1);
}
process.exit(worst);
