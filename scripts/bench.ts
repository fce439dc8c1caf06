// `npm run bench [-- --runs N] [--quick]`: what the program costs, measured side by side in one run
// with the real CLI, language host, plugins and program (build excluded: run `npm run setup` first).
// Prints one table (medians of N runs, default 3, runs interleaved so a busy moment hits every row
// alike) and the project's goals for it, each met or missed. Not a test: it exits 1 only when a
// step fails. Every stack lives in a temp folder and every simulator is stopped, also on Ctrl-C.
//
// Memory is the peak RSS of a process tree, read from /proc every 100 ms (the sum of VmRSS over
// the tree at each sample, the highest sample): "program" is the Node.js language host, the node
// process it runs (the TypeScript program) and what that starts; "all" adds the CLI and plugins.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { netPrefix, SUITES } from "../test/addresses";
import {
  BIN,
  missingToolchain,
  PULUMI,
  ROOT,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  stackFileConfig,
  Workspace,
} from "./engine";

const USAGE = `usage: npm run bench [-- --runs N] [--quick]
  --runs N   runs per measurement, the median is shown (default 3)
  --quick    what the goals need: previews of 3 and 100 nodes (no 25) beside the floors, a refresh
             of 3 nodes (no 25), ups of 1 and 10 nodes; no end-to-end suite`;

const SUITE = [
  "test/engine/e2e.test.ts",
  "test/engine/faults.test.ts",
  "test/engine/nodestate.test.ts",
  "test/engine/rollout.test.ts",
  "test/engine/addons.test.ts",
];
const BENCH_FIXTURES = join(ROOT, "test", "fixtures", "bench");
// Loopback nets and ports of the bench's simulators (test/addresses.ts).
const { nets: NETS, ports: PORTS } = SUITES.bench;
const GIB = 1024 ** 3;

function parseArgs(argv: string[]): { runs: number; quick: boolean } {
  let runs = 3;
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") continue;
    if (arg === "--quick") quick = true;
    else if (arg === "--runs" || arg?.startsWith("--runs=")) {
      const value = arg === "--runs" ? argv[++i] : arg.slice("--runs=".length);
      runs = Number(value);
      if (!Number.isInteger(runs) || runs < 1 || runs > 50) fail(`--runs: ${JSON.stringify(value)} is not a whole number from 1 to 50`);
    } else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else fail(`unknown argument: ${arg}\n${USAGE}`);
  }
  return { runs, quick };
}

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

const progress = (line: string) => console.error(line);

// --- cleanup: every workspace removed, every simulator and child process tree stopped -----------

const workspaces = new Set<Workspace>();
const simulators = new Set<Simulator>();
const children = new Set<ChildProcess>();

function cleanup(): void {
  for (const child of children) killTree(child);
  for (const sim of simulators) sim.dispose();
  for (const ws of workspaces) ws.dispose();
  children.clear();
  simulators.clear();
  workspaces.clear();
}

/**
 * Stops a command and everything under it. The CLI starts the language host in a process group of
 * its own, and a killed CLI leaves it running; so every descendant, found before any is killed.
 */
function killTree(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  for (const pid of tree(readProcs(), child.pid).keys()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    progress(`\n${signal}: stopping the simulators and removing the bench stacks`);
    cleanup();
    process.exit(130);
  });
}

/** A workspace that is removed on exit. Its constructor's `stack init` line goes to stderr with the progress. */
function workspace(stack: string, config: Record<string, unknown>, program?: string): Workspace {
  const log = console.log;
  console.log = console.error;
  try {
    const ws = new Workspace(stack, config, program);
    workspaces.add(ws);
    return ws;
  } finally {
    console.log = log;
  }
}

function disposeWorkspace(ws: Workspace): void {
  ws.dispose();
  workspaces.delete(ws);
}

let started = 0;

/** A simulator on a loopback net and ports of its own (never reused within a run, so no port waits on a dying process). */
async function simulator(counts: {
  controlPlanes: number;
  workers: number;
}): Promise<{ sim: Simulator; nodes: SimNodeConfig[]; net: number }> {
  const i = started++;
  const [net, factoryPort, controlPort] = [NETS[i], PORTS[2 * i], PORTS[2 * i + 1]];
  if (net === undefined || factoryPort === undefined || controlPort === undefined) {
    throw new Error(
      `the bench starts at most ${NETS.length} simulators (SUITES.bench in test/addresses.ts): give it more nets and ports there, or fewer runs`,
    );
  }
  const nodes = simNodes(net, counts);
  const sim = await Simulator.start(
    nodes.map((n) => n.address),
    factoryPort,
    controlPort,
  );
  simulators.add(sim);
  return { sim, nodes, net };
}

function stopSimulator(sim: Simulator): void {
  sim.dispose();
  simulators.delete(sim);
}

// --- measuring one command ---------------------------------------------------------------------

/** Who in a command's process tree: the CLI, the program (language host and node), the resource plugins. */
type Part = "cli" | "program" | "plugins" | "other";
const PARTS: Part[] = ["cli", "program", "plugins", "other"];

interface Sample {
  seconds: number;
  /** Peak RSS per part and of the whole tree (each the highest sample of a sum), in bytes. */
  rss: Record<Part | "all", number>;
  /** CPU seconds per part (user + system, as last seen alive). */
  cpu: Record<Part, number>;
}

interface Proc {
  ppid: number;
  comm: string;
  rss: number;
  /** utime + stime, in clock ticks (100 per second on Linux). */
  ticks: number;
}

function readProcs(): Map<number, Proc> {
  const procs = new Map<number, Proc>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // comm is in parentheses and may hold spaces; the fields after it are space-separated.
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const f = stat.slice(close + 2).split(" ");
      // proc(5): f[0] is field 3 (state), so ppid is f[1], utime f[11], stime f[12], rss (pages) f[21].
      procs.set(Number(entry), { ppid: Number(f[1]), comm, rss: Number(f[21]) * 4096, ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // the process exited while we read
    }
  }
  return procs;
}

/** Every process under `root` with its part; comm is the name cut to 15 characters. */
function tree(procs: Map<number, Proc>, root: number): Map<number, Part> {
  const kids = new Map<number, number[]>();
  for (const [pid, p] of procs) kids.set(p.ppid, [...(kids.get(p.ppid) ?? []), pid]);
  const parts = new Map<number, Part>();
  const walk = (pid: number, inherited: Part | undefined) => {
    const p = procs.get(pid);
    if (p === undefined) return;
    const part: Part =
      inherited ??
      (p.comm === "pulumi-language"
        ? "program"
        : p.comm.startsWith("pulumi-resource") || p.comm.startsWith("pulumi-analyzer")
          ? "plugins"
          : p.comm === "pulumi"
            ? "cli"
            : "other");
    parts.set(pid, part);
    // Whatever the language host or a plugin starts belongs to it.
    for (const kid of kids.get(pid) ?? []) walk(kid, part === "cli" || part === "other" ? undefined : part);
  };
  walk(root, undefined);
  return parts;
}

interface Outcome extends Sample {
  code: number;
  output: string;
}

const zero = <K extends string>(keys: K[]) => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;

/** Runs a command to its end, timing it and sampling its process tree's memory and CPU every 100 ms. */
function measure(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    // Its own process group: a Ctrl-C reaches the bench alone, which then stops the whole tree.
    const child = spawn(command, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let output = "";
    child.stdout?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const rss = zero<Part | "all">([...PARTS, "all"]);
    const ticks = new Map<number, { part: Part; ticks: number }>();
    const sample = () => {
      if (child.pid === undefined) return;
      const procs = readProcs();
      const now = zero<Part | "all">([...PARTS, "all"]);
      for (const [pid, part] of tree(procs, child.pid)) {
        const p = procs.get(pid) as Proc;
        now[part] += p.rss;
        now.all += p.rss;
        ticks.set(pid, { part, ticks: Math.max(ticks.get(pid)?.ticks ?? 0, p.ticks) });
      }
      for (const k of [...PARTS, "all"] as const) rss[k] = Math.max(rss[k], now[k]);
    };
    const timer = setInterval(sample, 100);
    child.on("error", (err) => {
      clearInterval(timer);
      children.delete(child);
      reject(err);
    });
    child.on("close", (code) => {
      clearInterval(timer);
      children.delete(child);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const cpu = zero<Part>(PARTS);
      for (const t of ticks.values()) cpu[t.part] += t.ticks / 100;
      resolve({ code: code ?? 1, output, seconds, rss, cpu });
    });
  });
}

/** The environment Workspace gives its own commands: its local backend and passphrase. */
function workspaceEnv(ws: Workspace, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...ws.env, ...extra };
}

/** `pulumi ARGS` in a workspace; fails with the CLI's output unless it succeeds. */
async function pulumi(ws: Workspace, args: string[], label: string, env: NodeJS.ProcessEnv = {}): Promise<Sample> {
  const r = await measure(PULUMI, [...args, "--non-interactive"], ws.dir, workspaceEnv(ws, env));
  if (r.code !== 0) throw new Error(`${label}: pulumi ${args.join(" ")} failed (exit ${r.code}):\n${r.output.trim()}`);
  progress(`  ${label}: ${secs(r.seconds)}, program ${mib(r.rss.program)}, all ${mib(r.rss.all)}`);
  return r;
}

// --- what is measured ----------------------------------------------------------------------------

/**
 * A stack like prod (VIP, extensions, a patch for all nodes, addons on as defaulted), scaled to
 * `size` nodes: three control planes and the rest workers, half of them tainted storage nodes.
 * The addresses need no machine behind them: a first preview never reaches a node.
 */
function scaledProdConfig(size: number): Record<string, unknown> {
  // prod's nodeSubnet is 10.20.0.0/24 and its VIP 10.20.0.10.
  if (size > 200) throw new Error(`${size} nodes do not fit prod's /24`);
  const prod = stackFileConfig("Pulumi.prod.yaml");
  const nodes = Array.from({ length: size }, (_, i) => {
    const controlPlane = i < Math.min(3, size);
    const storage = !controlPlane && i % 2 === 0;
    return {
      name: controlPlane ? `bench-cp-${i + 1}` : `bench-worker-${i - 2}`,
      address: `10.20.0.${20 + i}`,
      role: controlPlane ? "controlplane" : "worker",
      installDiskSelector: { type: "nvme" },
      ...(controlPlane ? {} : { labels: { "node.kubernetes.io/pool": storage ? "storage" : "general" } }),
      ...(storage ? { taints: [{ key: "dedicated", value: "storage", effect: "NoSchedule" }] } : {}),
    };
  });
  return {
    ...prod,
    "talos-cluster:clusterName": `bench-${size}`,
    "talos-cluster:nodes": nodes,
  };
}

/** Stack config for simulated nodes, addons off (no Kubernetes runs there); with three control planes, a VIP as prod has. */
function simConfig(sim: Simulator, name: string, nodes: SimNodeConfig[], net: number): Record<string, unknown> {
  const controlPlanes = nodes.filter((n) => n.role === "controlplane").length;
  const vip = `${netPrefix(net)}.100`;
  const ha =
    controlPlanes > 1
      ? {
          "talos-cluster:endpoint": vip,
          // The simulated nodes have one link, enp1s0, as predictable naming gives a VM.
          "talos-cluster:network": { nodeSubnet: `${netPrefix(net)}.0/24`, vip: { address: vip, interface: "enp1s0" } },
        }
      : {};
  return simStackConfig(sim, name, nodes, { "talos-cluster:nodeTimeout": "60s", ...ha });
}

const clusterShape = (size: number) => ({ controlPlanes: Math.min(3, size), workers: Math.max(0, size - 3) });

interface Row {
  section: Section;
  key: string;
  label: string;
  samples: Sample[];
  failed?: string;
}

type Section = "preview" | "refresh" | "up" | "suite";
const SECTIONS: Record<Section, string> = {
  preview: "pulumi preview, a new stack (the program with prod's settings and addons; no node is reached)",
  refresh: "pulumi preview --refresh after an up (simulated nodes, addons off)",
  up: "pulumi up, a new stack on fresh simulated nodes (addons off)",
  suite: "end-to-end suite (npx vitest run FILE)",
};

const rows: Row[] = [];
function row(section: Section, key: string, label: string): Row {
  const r: Row = { section, key, label, samples: [] };
  rows.push(r);
  return r;
}

// ts-node (the one @pulumi/pulumi vendors, 7.0.1) type-checks each program file on its first load
// and caches the output under the OS temp dir, keyed by the project folder; every measured run but
// the "first preview" rows reuses that cache, as repeated runs in one checkout do.
const NO_TS_CACHE = { TS_NODE_CACHE: "false" };

interface Measured {
  row: Row;
  ws: Workspace;
  env?: NodeJS.ProcessEnv;
}

async function benchPreviews(runs: number, sizes: number[]): Promise<void> {
  progress(`\n${SECTIONS.preview}`);
  const empty = workspace("bench-empty", {}, join(BENCH_FIXTURES, "empty"));
  const sdk = workspace("bench-sdk", {}, join(BENCH_FIXTURES, "sdk"));
  const real = new Map(sizes.map((n) => [n, workspace(`bench-${n}`, scaledProdConfig(n))]));
  const nodes = (n: number) => real.get(n) as Workspace;
  const measured: Measured[] = [
    { row: row("preview", "empty", "empty TypeScript program (the floor)"), ws: empty },
    { row: row("preview", "sdk", "SDK floor: empty program that loads @pulumi/pulumi"), ws: sdk },
    ...sizes.map((n) => ({ row: row("preview", `p${n}`, `${n} nodes`), ws: nodes(n) })),
    { row: row("preview", "empty-cold", "empty program, first preview (ts-node type-checks)"), ws: empty, env: NO_TS_CACHE },
    { row: row("preview", "p3-cold", "3 nodes, first preview (ts-node type-checks)"), ws: nodes(3), env: NO_TS_CACHE },
  ];
  // The engine serializes the whole deployment after every step even in a preview, whose persister
  // then discards it (pulumi/pulumi#14967): the same previews without that, for comparison.
  for (const n of [3, Math.max(...sizes)]) {
    measured.push({
      row: row("preview", `p${n}-nockpt`, `${n} nodes, PULUMI_SKIP_CHECKPOINTS=true`),
      ws: nodes(n),
      env: { PULUMI_SKIP_CHECKPOINTS: "true" },
    });
  }
  // One unmeasured pass first: ts-node's cache for each folder, and the binaries in the page cache.
  for (const ws of [empty, sdk, ...real.values()]) await pulumi(ws, ["preview"], `warm-up ${ws.stack}`);
  for (let run = 1; run <= runs; run++) {
    for (const m of measured) m.row.samples.push(await pulumi(m.ws, ["preview"], `${m.row.label}, run ${run}/${runs}`, m.env));
  }
  for (const ws of [empty, sdk, ...real.values()]) disposeWorkspace(ws);
}

async function benchRefresh(runs: number, sizes: number[]): Promise<void> {
  progress(`\n${SECTIONS.refresh}`);
  const stacks: (Measured & { sim: Simulator })[] = [];
  for (const n of sizes) {
    const { sim, nodes, net } = await simulator(clusterShape(n));
    const ws = workspace(`bench-refresh-${n}`, simConfig(sim, `refresh${n}`, nodes, net));
    await pulumi(ws, ["up", "--yes"], `up of ${n} nodes to refresh`);
    stacks.push({ row: row("refresh", `r${n}`, `${n} simulated nodes`), ws, sim });
  }
  for (let run = 1; run <= runs; run++) {
    for (const s of stacks) {
      s.row.samples.push(await pulumi(s.ws, ["preview", "--refresh", "--expect-no-changes"], `${s.row.label}, run ${run}/${runs}`));
    }
  }
  for (const s of stacks) {
    disposeWorkspace(s.ws);
    stopSimulator(s.sim);
  }
}

/** A new stack in an existing workspace (its folder, so its ts-node cache), for the config given. */
async function newStack(ws: Workspace, stack: string, config: Record<string, unknown>): Promise<void> {
  writeFileSync(join(ws.dir, `Pulumi.${stack}.yaml`), stringify({ config }));
  const r = await measure(PULUMI, ["stack", "init", stack, "--non-interactive"], ws.dir, workspaceEnv(ws));
  if (r.code !== 0) throw new Error(`pulumi stack init ${stack} failed (exit ${r.code}):\n${r.output.trim()}`);
}

async function benchUps(runs: number, sizes: number[]): Promise<void> {
  progress(`\n${SECTIONS.up}`);
  const ups = sizes.map((n) => ({
    n,
    row: row("up", `u${n}`, `${n} simulated node${n === 1 ? "" : "s"}`),
    ws: workspace(`bench-up-${n}`, {}),
  }));
  // Run 0 is the unmeasured warm-up: ts-node's cache for each folder.
  for (let run = 0; run <= runs; run++) {
    for (const up of ups) {
      const { sim, nodes, net } = await simulator(clusterShape(up.n));
      const stack = `up${up.n}-${run}`;
      await newStack(up.ws, stack, simConfig(sim, `up${up.n}`, nodes, net));
      const label = run === 0 ? `warm-up ${up.row.label}` : `${up.row.label}, run ${run}/${runs}`;
      const sample = await pulumi(up.ws, ["up", "--yes", "--stack", stack], label);
      if (run > 0) up.row.samples.push(sample);
      stopSimulator(sim);
    }
  }
  for (const up of ups) disposeWorkspace(up.ws);
}

async function benchSuite(runs: number): Promise<void> {
  progress(`\n${SECTIONS.suite}`);
  const files = SUITE.map((file) => ({ file, row: row("suite", file, file) }));
  for (let run = 1; run <= runs; run++) {
    for (const f of files) {
      if (f.row.failed !== undefined) continue;
      const r = await measure(join(BIN, "vitest"), ["run", f.file, "--reporter=dot"], ROOT, process.env);
      if (r.code === 0) {
        f.row.samples.push(r);
        progress(`  ${f.file}, run ${run}/${runs}: ${secs(r.seconds)}`);
      } else {
        f.row.failed = `failed (exit ${r.code}); see npx vitest run ${f.file}`;
        progress(`  ${f.file}, run ${run}/${runs}: ${f.row.failed}`);
      }
    }
  }
}

// --- the table and the goals ---------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 ** 2)} MiB`;
}
function secs(s: number): string {
  return `${s.toFixed(1)} s`;
}
const times = (x: number) => `${x.toFixed(2)}x`;

interface Stat {
  seconds: number;
  rss: Record<Part | "all", number>;
  cpu: Record<Part, number>;
}

/** Medians of a row's samples, each figure on its own. */
function stat(key: string): Stat | undefined {
  const r = rows.find((x) => x.key === key);
  if (r === undefined || r.samples.length === 0) return undefined;
  const of = (pick: (s: Sample) => number) => median(r.samples.map(pick));
  return {
    seconds: of((s) => s.seconds),
    rss: Object.fromEntries([...PARTS, "all"].map((k) => [k, of((s) => s.rss[k as Part | "all"])])) as Stat["rss"],
    cpu: Object.fromEntries(PARTS.map((k) => [k, of((s) => s.cpu[k])])) as Stat["cpu"],
  };
}

/** What a row is compared with: previews with the empty program (and 3 nodes), refreshes with 3 nodes, ups with one node. */
function comparison(r: Row): string {
  const here = stat(r.key)?.seconds;
  if (here === undefined) return "";
  const vs = (key: string, name: string) => {
    const base = stat(key)?.seconds;
    return base === undefined || key === r.key ? undefined : `${times(here / base)} ${name}`;
  };
  const parts: (string | undefined)[] = [];
  if (r.section === "preview") {
    const cold = r.key.endsWith("-cold");
    parts.push(vs(cold ? "empty-cold" : "empty", cold ? "empty, first" : "empty"));
    if (/^p\d+$/.test(r.key)) parts.push(vs("sdk", "SDK floor"), vs("p3", "3 nodes"));
    if (r.key.endsWith("-nockpt")) parts.push(vs("p3-nockpt", "3 nodes, same"));
  }
  if (r.section === "refresh") parts.push(vs("r3", "3 nodes"));
  if (r.section === "up") parts.push(vs("u1", "1 node"));
  return parts.filter((x) => x !== undefined).join(", ");
}

function table(): string {
  const head = ["", "median", "runs (s)", "compared", "peak RSS: program / all", "CPU s: CLI / program / plugins"];
  const body: string[][] = [];
  let section: Section | undefined;
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      body.push([`**${SECTIONS[section]}**`, "", "", "", "", ""]);
    }
    const s = stat(r.key);
    if (s === undefined) {
      body.push([r.label, r.failed ?? "not run", "", "", "", ""]);
      continue;
    }
    const engine = r.section !== "suite";
    body.push([
      r.label,
      secs(s.seconds) + (r.failed === undefined ? "" : ` (then ${r.failed})`),
      r.samples.map((x) => x.seconds.toFixed(1)).join(" / "),
      comparison(r),
      engine ? `${mib(s.rss.program)} / ${mib(s.rss.all)}` : "",
      engine ? [s.cpu.cli, s.cpu.program, s.cpu.plugins].map((c) => c.toFixed(1)).join(" / ") : "",
    ]);
  }
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((line) => (line[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

interface Goal {
  text: string;
  met: boolean | undefined;
  seen: string;
}

function goals(): Goal[] {
  const ratio = (a: string, b: string) => {
    const x = stat(a);
    const y = stat(b);
    return x && y ? x.seconds / y.seconds : undefined;
  };
  const check = (text: string, value: number | undefined, limit: number, more = ""): Goal => ({
    text,
    met: value === undefined ? undefined : value <= limit,
    seen: value === undefined ? "not measured" : `${times(value)}${more}`,
  });
  /** A related figure after the goal's own, when it was measured. */
  const also = (label: string, x: number | undefined) => (x === undefined ? "" : `; ${label}: ${times(x)}`);
  const p100 = stat("p100");
  return [
    check(
      "3-node preview at most 1.5x the empty program's",
      ratio("p3", "empty"),
      1.5,
      also("against the SDK floor", ratio("p3", "sdk")) + also("first previews (ts-node type-checks)", ratio("p3-cold", "empty-cold")),
    ),
    check(
      "100-node preview at most 2x the 3-node one",
      ratio("p100", "p3"),
      2,
      also("both with PULUMI_SKIP_CHECKPOINTS=true", ratio("p100-nockpt", "p3-nockpt")),
    ),
    {
      text: "100-node preview's program under 1 GiB",
      met: p100 === undefined ? undefined : p100.rss.program < GIB,
      seen: p100 === undefined ? "not measured" : `${mib(p100.rss.program)} (all processes: ${mib(p100.rss.all)})`,
    },
    check("10-node up at most 1.5x the 1-node one", ratio("u10", "u1"), 1.5),
  ];
}

function machine(): string {
  const cpu = cpus()[0]?.model.trim() ?? "unknown CPU";
  const nproc = spawnSync("nproc", { encoding: "utf8" }).stdout.trim();
  const version = spawnSync(PULUMI, ["version"], { encoding: "utf8" }).stdout.trim();
  return `${nproc} cores (${cpu}), ${(totalmem() / GIB).toFixed(0)} GiB, Linux, Node.js ${process.version}, pulumi ${version}`;
}

async function main(): Promise<void> {
  const { runs, quick } = parseArgs(process.argv.slice(2));
  const missing = missingToolchain();
  if (missing !== undefined) fail(`npm run bench: ${missing}`);
  const started = Date.now();
  progress(`npm run bench: ${runs} run${runs === 1 ? "" : "s"} each${quick ? ", quick" : ""}; progress here, the table at the end`);

  await benchPreviews(runs, quick ? [3, 100] : [3, 25, 100]);
  await benchRefresh(runs, quick ? [3] : [3, 25]);
  await benchUps(runs, [1, 10]);
  if (!quick) await benchSuite(runs);

  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(
    `\nnpm run bench${quick ? " -- --quick" : ""}: median of ${runs} run${runs === 1 ? "" : "s"}, ${new Date().toISOString().slice(0, 10)}`,
  );
  console.log(`machine: ${machine()}`);
  console.log(
    "peak RSS and CPU: read from /proc every 100 ms; program = language host + node, all = with the CLI and plugins; CPU as user + system seconds\n",
  );
  console.log(table());
  console.log("\ngoals (not tests):");
  for (const g of goals()) console.log(`  ${g.met === undefined ? "n/a   " : g.met ? "met   " : "missed"}  ${g.text}: ${g.seen}`);
  console.log(`\nbench took ${minutes} min`);
  if (rows.some((r) => r.failed !== undefined)) process.exitCode = 1;
}

main().then(
  () => cleanup(),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    // A simulator still running would keep the process alive.
    cleanup();
    process.exit(1);
  },
);
