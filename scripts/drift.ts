// `npm run drift -- -s dev [-s prod]`: refresh-preview each stack, print one verdict line per
// stack, exit 1 on drift (2 when the preview itself fails). The drift workflow runs exactly this.
import { spawnSync } from "node:child_process";
import { driftVerdict, type PreviewDigest, verdictLine } from "./drift-verdict";

function stacksFromArgs(argv: string[]): string[] {
  const stacks: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if ((arg === "-s" || arg === "--stack") && argv[i + 1] !== undefined) stacks.push(argv[++i] as string);
    else if (arg?.startsWith("--stack=")) stacks.push(arg.slice("--stack=".length));
  }
  return stacks;
}

const stacks = stacksFromArgs(process.argv.slice(2));
if (stacks.length === 0) {
  console.error("usage: npm run drift -- -s <stack> [-s <stack> ...]");
  process.exit(2);
}
const pulumi = process.env.PULUMI_BIN ?? "pulumi";
let worst = 0;
for (const stack of stacks) {
  const run = spawnSync(pulumi, ["preview", "--refresh", "--json", "--non-interactive", "--stack", stack], {
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
}
process.exit(worst);
