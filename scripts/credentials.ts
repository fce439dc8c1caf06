// `npm run credentials -- <stack>`: a stack's talosconfig and kubeconfig, written where git never
// picks them up (.credentials/<stack>/, git-ignored) and only the owner can read them (0600 in a
// 0700 folder). They hold admin keys to the cluster and its nodes.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { credentialsDir, writeCredentials } from "./credentials-files";

function main(args: string[]): number {
  const stack = args.find((a) => !a.startsWith("-"));
  if (stack === undefined || !/^[A-Za-z0-9_.-]+$/.test(stack)) {
    console.error("usage: npm run credentials -- <stack>   (e.g. dev): writes .credentials/<stack>/talosconfig and kubeconfig");
    return 2;
  }
  const cli = resolve("node_modules/.bin/pulumi");
  if (!existsSync(cli)) {
    console.error("the Pulumi CLI is not set up here yet: run npm run setup first");
    return 1;
  }
  const run = spawnSync(cli, ["stack", "output", "--json", "--show-secrets", "-s", stack], { encoding: "utf8" });
  if (run.status !== 0) {
    console.error(run.stderr.trim() || `pulumi stack output failed (${String(run.status)})`);
    return 1;
  }
  try {
    const written = writeCredentials(credentialsDir(stack), JSON.parse(run.stdout) as Record<string, unknown>);
    console.log(`${written.join(" and ")} (mode 0600, git-ignored)`);
    console.log(`export TALOSCONFIG=$PWD/.credentials/${stack}/talosconfig KUBECONFIG=$PWD/.credentials/${stack}/kubeconfig`);
    return 0;
  } catch (e) {
    console.error(`${stack}: ${(e as Error).message}`);
    return 1;
  }
}

process.exit(main(process.argv.slice(2)));
