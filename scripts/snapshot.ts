// `npm run snapshot -- <stack>`: a verified etcd snapshot of the stack's cluster, outside any
// rollout, into the folder the rollout's snapshots go to (upgrade.snapshotDir, or
// ~/.local/state/talos-cluster/snapshots/<stack>), kept as those are (the newest five per node).
// The nodes are asked with a one-hour client certificate whose only role is os:etcd:backup, minted
// from the machine CA in the stack's state (talosnode/cmd/talosnode-snapshot, which `npm run setup`
// builds); the machine secrets reach it on its standard input only. The snapshot workflow runs this.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { snapshotFolder } from "../components/program";
import { ConfigError, parseConfig } from "../lib/config/parse";
import { configFromStackFile } from "../lib/config/source";
import { controlPlanesOf, machineSecretsFromState } from "./snapshot-input";

const USAGE = "usage: npm run snapshot -- <stack>   (e.g. prod): a verified etcd snapshot into the stack's snapshot folder";

function main(args: string[]): number {
  const given = args.filter((a) => a !== "--");
  const stack = given[0];
  if (given.length !== 1 || stack === undefined || !/^[A-Za-z0-9_.-]+$/.test(stack)) {
    console.error(USAGE);
    return 2;
  }
  // The stack's config, as `npm run validate` reads it: its control planes and snapshot folder.
  const file = `Pulumi.${stack}.yaml`;
  if (!existsSync(file)) {
    console.error(`${stack}: no ${file} here; run this in the project folder, with a stack that exists`);
    return 2;
  }
  let folder: { dir: string; prefix: string };
  let controlPlanes: { name: string; address: string }[];
  try {
    const { config } = parseConfig(configFromStackFile(readFileSync(file, "utf8")));
    folder = snapshotFolder(config, stack);
    controlPlanes = controlPlanesOf(config);
  } catch (e) {
    console.error(`${stack}: ${e instanceof ConfigError ? e.message : `cannot read ${file}: ${(e as Error).message}`}`);
    return 2;
  }
  const command = process.env.TALOSNODE_SNAPSHOT || join(__dirname, "..", "node_modules", ".bin", "talosnode-snapshot");
  if (!existsSync(command)) {
    console.error(`${stack}: talosnode-snapshot (${command}) is missing: run npm run setup first`);
    return 1;
  }

  // The machine secrets live in the state (the talos plugin's Secrets resource), decrypted here.
  const pulumi = process.env.PULUMI_BIN ?? "pulumi";
  const exported = spawnSync(pulumi, ["stack", "export", "--show-secrets", "--stack", stack], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (exported.error !== undefined) {
    console.error(`${stack}: cannot run the Pulumi CLI (${pulumi}): ${exported.error.message}; run npm run setup first`);
    return 1;
  }
  if (exported.status !== 0) {
    console.error(`${stack}: pulumi stack export failed: ${exported.stderr.trim() || `exit ${exported.status}`}`);
    return 1;
  }
  let machineSecrets: Record<string, unknown>;
  try {
    machineSecrets = machineSecretsFromState(stack, exported.stdout);
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }

  const run = spawnSync(command, ["-dir", folder.dir, "-prefix", folder.prefix], {
    input: JSON.stringify({ machineSecrets, controlPlanes }),
    encoding: "utf8",
  });
  if (run.status !== 0) {
    console.error(`${stack}: ${run.stderr.trim() || run.error?.message || `talosnode-snapshot exit ${run.status}`}`);
    return 1;
  }
  const taken = JSON.parse(run.stdout) as { node: string; address: string; path: string; size: number; revision: number };
  console.log(
    `${stack}: etcd snapshot of ${taken.node} (${taken.address}), verified: ${taken.path} (${taken.size} bytes, revision ${taken.revision})`,
  );
  return 0;
}

process.exit(main(process.argv.slice(2)));
