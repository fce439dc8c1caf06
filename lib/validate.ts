// Talos' own judgement of every node's machine config, before any resource is declared: the config
// each node would get is generated as talosnode's getMachineConfiguration renders it (the same Go
// package, talosvalidate/judge), each patch applied in the program's order with Talos' patcher,
// and the result checked by Talos' validator for bare metal (machinery v1.14.1, refusing on top
// what the talos plugin's config library v1.9.2 refuses at a node's first apply).
// A bad patch is then refused up front on a new stack too, where the render waits for the machine
// secrets to exist; the render itself validates again, against the real secrets.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, parseConfig } from "./config/parse";
import type { ClusterConfig, ParsedConfig } from "./config/schema";
import { type KeyedPatch, planCluster } from "./plan";

/** What talosvalidate reads (talosvalidate/README.md). */
export interface ValidatorInput {
  clusterName: string;
  endpoint: string;
  talosVersion: string;
  contract: string;
  kubernetesVersion: string;
  nodes: { name: string; role: string; patches: KeyedPatch[] }[];
}

interface Finding {
  key: string;
  node: string;
  message: string;
}

export interface TalosJudgement {
  problems: string[];
  warnings: string[];
}

/**
 * Every node's patches as the cluster plan orders them, the ones TalosCluster applies. The config
 * contract of an existing cluster lives in its state (the machine secrets), which a program cannot
 * read before it runs; the stack's release stands in for it, which is exact for a new cluster.
 */
export function validatorInput(config: ClusterConfig): ValidatorInput {
  return {
    clusterName: config.clusterName,
    endpoint: config.endpoint,
    talosVersion: config.talosVersion,
    contract: config.talosVersion,
    kubernetesVersion: config.kubernetesVersion,
    nodes: planCluster(config.clusterName, config).nodes.map((n) => ({
      name: n.name,
      role: n.role,
      patches: n.patches(config.talosVersion),
    })),
  };
}

/** Where setup links the validator; TALOSVALIDATE_BIN overrides it. */
export const VALIDATOR_BIN = process.env.TALOSVALIDATE_BIN ?? join(__dirname, "..", "node_modules", ".bin", "talosvalidate");

/** Runs Talos' validator over every node; one line per problem and warning, each led by its key. */
export function judgeWithTalos(config: ClusterConfig, bin: string = VALIDATOR_BIN): TalosJudgement {
  if (!existsSync(bin)) throw new Error(`Talos' validator (${bin}) is missing; run \`npm run setup\``);
  const run = spawnSync(bin, [], { input: JSON.stringify(validatorInput(config)), encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`Talos' validator failed (exit ${run.status}): ${run.stderr.trim() || run.error?.message}`);
  const out = JSON.parse(run.stdout) as { problems?: Finding[] | null; warnings?: Finding[] | null };
  // A stack key is enough to fix a patch; the program's own findings say which nodes they hit.
  const line = (f: Finding) => `${f.key}: ${f.message}${f.key.startsWith("(") ? ` (on ${f.node})` : ""}`;
  return { problems: (out.problems ?? []).map(line), warnings: (out.warnings ?? []).map(line) };
}

/**
 * The whole check of a stack, as the program and `npm run validate` run it: the stack config
 * (parseConfig), then Talos' judgement of the configs it makes. Throws one ConfigError.
 */
export function checkStack(raw: Record<string, unknown>, bin: string = VALIDATOR_BIN): ParsedConfig {
  const parsed = parseConfig(raw);
  const talos = judgeWithTalos(parsed.config, bin);
  if (talos.problems.length > 0) throw new ConfigError(talos.problems);
  return { config: parsed.config, warnings: [...parsed.warnings, ...talos.warnings] };
}
