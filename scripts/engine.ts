// The real engine, driven from TypeScript by the engine tests, the demo and the bench: the CLI and
// plugins `npm run setup` built, a project folder per stack (a throwaway one unless told; stack
// files in the repo are never touched), a local file:// backend, and the simulated Talos nodes and
// Image Factory of test/sim.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { netPrefix, SERVER_HOST } from "../test/addresses";

export const ROOT = resolve(__dirname, "..");
export const BIN = join(ROOT, "node_modules", ".bin");
export const PULUMI = join(BIN, "pulumi");
/** The simulator: $TALOS_SIM (e.g. one built from this checkout), else the one setup linked. */
const TALOS_SIM = process.env.TALOS_SIM || join(BIN, "talos-sim");
/**
 * The release a cluster created on simulated nodes declares, and its Kubernetes: the release the
 * simulator's nodes run unless told otherwise (talos-sim -talos-version's default), not the
 * stacks' default (lib/versions.ts). The engine suites test the program's mechanisms on it (and
 * move it by patch releases the simulated factory offers); the demo runs the stacks' default on a
 * 1.14 contract and test/engine/minors.test.ts moves a cluster across minors. simStackConfig and
 * the lab use these; a test of another release names its own.
 */
export const SIM_TALOS_VERSION = "v1.11.5";
export const SIM_KUBERNETES_VERSION = "1.34.1";
/** The simulator's real control plane (talos-sim -etcd -kube-apiserver): $ETCD and $KUBE_APISERVER, else setup's links. */
export const ETCD = process.env.ETCD || join(BIN, "etcd");
export const KUBE_APISERVER = process.env.KUBE_APISERVER || join(BIN, "kube-apiserver");
const TALOS_SDK = join(ROOT, "node_modules", "@pulumiverse", "talos", "bin", "index.js");
const TALOSNODE_SDK = join(ROOT, "node_modules", "@talos-cluster", "talosnode", "bin", "index.js");

/** The `config:` mapping of a stack file, path relative to the repository. */
export function stackFileConfig(file: string): Record<string, unknown> {
  return (parse(readFileSync(join(ROOT, file), "utf8")) as { config: Record<string, unknown> }).config;
}

/**
 * What is missing for engine tests, or undefined when the toolchain is all there. `controlPlane`:
 * the tests also need the simulator's real etcd and kube-apiserver.
 */
export function missingToolchain(needs: { controlPlane?: boolean } = {}): string | undefined {
  for (const [what, path] of [
    ["the pulumi CLI", PULUMI],
    ["talos-sim", TALOS_SIM],
    ["@pulumiverse/talos", TALOS_SDK],
    ["@talos-cluster/talosnode", TALOSNODE_SDK],
    ...(needs.controlPlane
      ? ([
          ["etcd", ETCD],
          ["kube-apiserver", KUBE_APISERVER],
        ] as const)
      : []),
  ] as const) {
    if (!existsSync(path)) return `${what} (${path}) is missing; run \`npm run setup\``;
  }
  return undefined;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, as a person would read them. */
  output: string;
}

/** A project folder with one stack on a local backend; the program is the repository's own. */
export class Workspace {
  readonly dir: string;
  /** The environment every command in the workspace runs with: its backend and passphrase. */
  readonly env: NodeJS.ProcessEnv;
  /**
   * The workspace's XDG_STATE_HOME, where the program puts etcd snapshots by default
   * (talos-cluster/snapshots/<stack>): its own, and outside the project folder, as in CI.
   */
  readonly stateHome: string;

  /**
   * `program`: a folder with its own Pulumi.yaml and index.ts to run instead of the project's.
   * `dir`: the project folder to (re)create, instead of a throwaway one under the temp folder.
   */
  constructor(
    readonly stack: string,
    config: Record<string, unknown>,
    program?: string,
    dir?: string,
  ) {
    if (dir !== undefined) {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
    }
    this.dir = dir ?? mkdtempSync(join(tmpdir(), `talos-cluster-${stack}-`));
    const own = program === undefined ? ["Pulumi.yaml", "index.ts", "components"] : readdirSync(program);
    for (const entry of own) symlinkSync(join(program ?? ROOT, entry), join(this.dir, entry));
    for (const entry of ["node_modules", "package.json", "tsconfig.json"]) {
      if (!own.includes(entry)) symlinkSync(join(ROOT, entry), join(this.dir, entry));
    }
    this.writeConfig(config);
    mkdirSync(join(this.dir, ".state"));
    this.stateHome = mkdtempSync(join(tmpdir(), `talos-cluster-${stack}-xdg-state-`));
    this.env = {
      ...process.env,
      PULUMI_BACKEND_URL: `file://${join(this.dir, ".state")}`,
      PULUMI_CONFIG_PASSPHRASE: "engine-tests",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      NO_COLOR: "1",
      // Helm (inside the Kubernetes plugin) keeps its repository cache and config here, not in ~.
      HELM_CACHE_HOME: join(this.dir, ".helm", "cache"),
      HELM_CONFIG_HOME: join(this.dir, ".helm", "config"),
      HELM_DATA_HOME: join(this.dir, ".helm", "data"),
      XDG_STATE_HOME: this.stateHome,
    };
    this.must(["stack", "init", stack]);
  }

  /** Replaces the stack's config (the `config:` mapping of Pulumi.<stack>.yaml), keeping its salt. */
  writeConfig(config: Record<string, unknown>): void {
    const file = join(this.dir, `Pulumi.${this.stack}.yaml`);
    const salt = existsSync(file) ? /^encryptionsalt: .*$/m.exec(readFileSync(file, "utf8"))?.[0] : undefined;
    writeFileSync(file, stringify({ config }) + (salt === undefined ? "" : `${salt}\n`));
  }

  /** Runs the CLI in the workspace, printing the step and how long it took. */
  run(args: string[]): RunResult {
    return this.exec("pulumi", PULUMI, [...args, "--non-interactive"]);
  }

  /** Runs any command in the workspace with its backend and passphrase, as a person in it would. */
  exec(label: string, command: string, args: string[]): RunResult {
    const started = Date.now();
    const r = spawnSync(command, args, {
      cwd: this.dir,
      env: { ...this.env, PULUMI_BIN: PULUMI },
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const code = r.status ?? 1;
    console.log(`[${this.stack}] ${label} ${args.filter((a) => a !== "--non-interactive").join(" ")}: exit ${code} in ${seconds}s`);
    return { code, stdout: r.stdout, stderr: r.stderr, output: `${r.stdout}\n${r.stderr}` };
  }

  /** Runs the CLI without waiting, so a test can act on the nodes while it runs. */
  runAsync(args: string[]): Promise<RunResult> {
    const started = Date.now();
    const proc = spawn(PULUMI, [...args, "--non-interactive"], { cwd: this.dir, env: { ...this.env, PULUMI_BIN: PULUMI } });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    proc.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    return new Promise((resolve) => {
      proc.on("close", (status) => {
        const code = status ?? 1;
        console.log(`[${this.stack}] pulumi ${args.join(" ")}: exit ${code} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
        resolve({ code, stdout, stderr, output: `${stdout}\n${stderr}` });
      });
    });
  }

  /** Runs the CLI with its own output on this terminal, as a person running it sees it. */
  show(args: string[]): number {
    return spawnSync(PULUMI, [...args, "--non-interactive"], { cwd: this.dir, env: this.env, stdio: "inherit" }).status ?? 1;
  }

  /** Runs the CLI and fails with its output unless it succeeds. */
  must(args: string[]): RunResult {
    const r = this.run(args);
    if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} failed (exit ${r.code}):\n${r.output}`);
    return r;
  }

  /** The stack's checkpoint, as the state backend holds it. */
  state(): { resources: StateResource[]; text: string } {
    const text = this.must(["stack", "export", "-s", this.stack]).stdout;
    const doc = JSON.parse(text) as { deployment: { resources?: StateResource[] } };
    return { resources: doc.deployment.resources ?? [], text };
  }

  /** Where the stack's etcd snapshots go by default. */
  snapshotFolder(): string {
    return join(this.stateHome, "talos-cluster", "snapshots", this.stack);
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
    rmSync(this.stateHome, { recursive: true, force: true });
  }
}

export interface StateResource {
  urn: string;
  type: string;
  id?: string;
  protect?: boolean;
  outputs?: Record<string, unknown>;
}

export interface SimNode {
  address: string;
  up: boolean;
  configured: boolean;
  role: string;
  hostname: string;
  installImage: string;
  applies: number;
  applyModes: string[];
  /** This boot's id: a new one after every reboot. */
  bootId: string;
  bootstrapped: boolean;
  bootstrapCalls: number;
  kubeconfigCalls: number;
  /** The last applied machine configuration (YAML). */
  config: string;
  /** The release it runs and the schematic it booted. */
  talosVersion: string;
  schematic?: string;
  /** The node's network links (predictable names, as on metal). */
  links: string[];
  /** The VIP its config declares: on which link, whether this node holds it, and if not why. */
  vip?: { address: string; link: string; up: boolean; reason: string };
  /** How the machine's own address reaches its first link ("dhcp", "static"), or why it does not. */
  nodeAddress: { link: string; source?: string; lost?: string };
  /** The Kubernetes Node its kubelet registered, as NodeRestriction let Talos shape it. */
  kubernetesNode?: { labels: Record<string, string>; taints: { key: string; value?: string; effect: string }[]; error: string } | null;
  /**
   * With a real control plane, per config apply (not dry runs): the mode, whether the Node was
   * cordoned then, and the pods still bound to it (not mirror pods).
   */
  kubeAtApply?: { mode: string; unschedulable: boolean; pods: string[] }[];
}

/** One cluster's etcd member list as the simulator keeps it: a learner is not promoted yet. */
export interface EtcdCluster {
  /** The cluster's name and a short hash of its Kubernetes CA ("lab/6d9f197e8cac"). */
  cluster: string;
  members: { id: string; name: string; address: string; learner: boolean }[];
}

/**
 * talos-sim flags for a real etcd and kube-apiserver per bootstrapped cluster, on the bootstrapped
 * control plane's address, port 6443; `delay` (a Go duration) after the bootstrap, else the
 * simulator's default (3s).
 */
export function controlPlaneFlags(delay?: string): string[] {
  return ["-etcd", ETCD, "-kube-apiserver", KUBE_APISERVER, ...(delay === undefined ? [] : ["-apiserver-delay", delay])];
}

/** Simulated Talos nodes and Image Factory (test/sim), on loopback addresses of the caller's choice. */
export class Simulator {
  private constructor(
    private readonly proc: ChildProcess,
    readonly factoryUrl: string,
    private readonly controlUrl: string,
  ) {}

  /**
   * `extra`: further talos-sim flags, e.g. `-talos-version v1.11.4` for nodes left on an old
   * release. `logFile`: write the simulator's log there and let it outlive this process (the
   * demo's --keep, the lab); otherwise it dies with its pipe. `host`: the loopback address the
   * factory and the control endpoint listen on (test/addresses.ts).
   */
  static async start(
    nodes: string[],
    factoryPort: number,
    controlPort: number,
    extra: string[] = [],
    logFile?: string,
    host = SERVER_HOST,
  ): Promise<Simulator> {
    const dir = mkdtempSync(join(tmpdir(), "talos-sim-"));
    const ready = join(dir, "ready");
    const factory = `${host}:${factoryPort}`;
    const control = `${host}:${controlPort}`;
    const args = ["-nodes", nodes.join(","), "-factory", factory, "-control", control, "-ready-file", ready, ...extra];
    const proc =
      logFile === undefined
        ? spawn(TALOS_SIM, args, { stdio: ["ignore", "ignore", "pipe"] })
        : spawn(TALOS_SIM, args, { stdio: ["ignore", "ignore", openSync(logFile, "a")], detached: true });
    let log = "";
    proc.stderr?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    if (logFile !== undefined) proc.unref();
    const deadline = Date.now() + 30_000;
    while (!existsSync(ready)) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill();
        throw new Error(`talos-sim did not start:\n${logFile === undefined ? log : readFileSync(logFile, "utf8")}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    rmSync(dir, { recursive: true, force: true });
    return new Simulator(proc, `http://${factory}`, `http://${control}`);
  }

  /** The simulator's process id. */
  get pid(): number | undefined {
    return this.proc.pid;
  }

  async nodes(): Promise<SimNode[]> {
    const res = await fetch(`${this.controlUrl}/state`);
    return ((await res.json()) as { nodes: SimNode[] }).nodes;
  }

  async node(address: string): Promise<SimNode> {
    const found = (await this.nodes()).find((n) => n.address === address);
    if (found === undefined) throw new Error(`the simulator has no node ${address}`);
    return found;
  }

  /** Changes what a node runs behind Pulumi's back, as a person with talosctl would. */
  async set(address: string, change: { talosVersion?: string; schematic?: string; configPatch?: string }): Promise<void> {
    const res = await fetch(`${this.controlUrl}/nodes/${address}/set`, { method: "POST", body: JSON.stringify(change) });
    if (!res.ok) throw new Error(`talos-sim set ${address}: ${res.status} ${await res.text()}`);
  }

  /** Each bootstrapped cluster's etcd member list, in its order (the simulator's /state). */
  async etcdMembers(): Promise<EtcdCluster[]> {
    const res = await fetch(`${this.controlUrl}/state`);
    return ((await res.json()) as { etcd?: EtcdCluster[] }).etcd ?? [];
  }

  /** What happened to the nodes, in time order: upgrades, applies, reboots, snapshots. */
  async timeline(): Promise<TimelineEvent[]> {
    const res = await fetch(`${this.controlUrl}/state`);
    return ((await res.json()) as { timeline?: TimelineEvent[] }).timeline ?? [];
  }

  /** Runs `act` (an up, usually) and returns its result with the timeline entries it produced. */
  async during<T>(act: () => T | Promise<T>): Promise<{ result: T; events: TimelineEvent[] }> {
    const mark = (await this.timeline()).length;
    const result = await act();
    return { result, events: (await this.timeline()).slice(mark) };
  }

  /**
   * Sets a node's faults (at least one): bootFails, the next upgrade's image does not boot and the
   * node comes back on the old one; kubeletNeverReady, the kubelet that starts next (after a
   * machine.kubelet change or a boot) never turns Ready; staticPodFails, that control-plane
   * component's pod never turns Ready from its next start ("" clears every component's).
   */
  async fault(address: string, fault: SimFault): Promise<void> {
    await this.post(address, "fault", fault);
  }

  /** Makes a control plane's etcd member unhealthy (or healthy again). */
  async etcd(address: string, member: { healthy: boolean }): Promise<void> {
    await this.post(address, "etcd", member);
  }

  private async post(address: string, action: string, body: unknown): Promise<void> {
    const res = await fetch(`${this.controlUrl}/nodes/${address}/${action}`, { method: "POST", body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`talos-sim ${action} ${address}: ${res.status} ${await res.text()}`);
  }

  async stop(address: string): Promise<void> {
    await this.control(address, "stop");
  }

  async start(address: string): Promise<void> {
    await this.control(address, "start");
  }

  private async control(address: string, action: "stop" | "start"): Promise<void> {
    const res = await fetch(`${this.controlUrl}/nodes/${address}/${action}`, { method: "POST" });
    if (!res.ok) throw new Error(`talos-sim ${action} ${address}: ${res.status} ${await res.text()}`);
  }

  dispose(): void {
    this.proc.kill();
  }
}

/** The faults POST /nodes/{address}/fault takes (test/sim/README.md). */
export interface SimFault {
  bootFails?: boolean;
  kubeletNeverReady?: boolean;
  staticPodFails?: ControlPlaneComponent | "";
}

/** The control-plane static pods the simulator runs, in upgrade-k8s' order. */
export type ControlPlaneComponent = "kube-apiserver" | "kube-controller-manager" | "kube-scheduler";

/** What a "component" timeline entry names. */
export type KubernetesComponent = ControlPlaneComponent | "kubelet";

/** One entry of the simulator's timeline. */
export interface TimelineEvent {
  at: string;
  /** The node's address. */
  node: string;
  event:
    | "upgrade"
    | "upgrade-refused"
    | "apply"
    | "down"
    | "up"
    | "snapshot"
    | "etcd-leader"
    | "etcd-leader-lost"
    | "etcd-joined"
    | "etcd-member-added"
    | "etcd-learner-promoted"
    | "etcd-leave"
    | "etcd-member-removed"
    | "reset"
    | "drain"
    | "wipe"
    | "node-not-ready"
    | "etcd-lost"
    | "etcd-recover"
    | "bootstrap"
    | "image-pull"
    | "component";
  /** image-pull: the image; component: "<component> <version>". */
  detail: string;
  /** component entries only: what started on another version than it ran on the node (not a first start). */
  component?: KubernetesComponent;
  /** component entries only: the image's version without the v ("1.37.0"). */
  version?: string;
}

/** A time a node was away (rebooting or stopped), from the simulator's timeline. */
export interface Downtime {
  node: string;
  from: number;
  /** Infinity while it is still down. */
  to: number;
  why: string;
}

/** Every interval a node was down, in the order they began. */
export function downtimes(timeline: TimelineEvent[]): Downtime[] {
  const open = new Map<string, Downtime>();
  const out: Downtime[] = [];
  for (const e of timeline) {
    const at = Date.parse(e.at);
    if (e.event === "down" && !open.has(e.node)) {
      const d = { node: e.node, from: at, to: Number.POSITIVE_INFINITY, why: e.detail };
      open.set(e.node, d);
      out.push(d);
    } else if (e.event === "up") {
      const d = open.get(e.node);
      if (d !== undefined) d.to = at;
      open.delete(e.node);
    }
  }
  return out;
}

/** The most nodes of `among` that were down at the same moment. */
export function mostDownAtOnce(downs: Downtime[], among: (node: string) => boolean = () => true): number {
  const edges = downs
    .filter((d) => among(d.node))
    .flatMap((d) => [
      { at: d.from, step: 1 },
      { at: d.to, step: -1 },
    ])
    // An "up" and a "down" at the same instant: count the up first.
    .sort((a, b) => a.at - b.at || a.step - b.step);
  let now = 0;
  let most = 0;
  for (const e of edges) {
    now += e.step;
    most = Math.max(most, now);
  }
  return most;
}

export interface SimNodeConfig {
  name: string;
  address: string;
  role: "controlplane" | "worker";
  installDisk: string;
  labels?: Record<string, string>;
  taints?: { key: string; value?: string; effect: string }[];
}

/** Control planes and workers on 127.<base>.<net>.x: each test file takes its own <net> (test/addresses.ts). */
export function simNodes(net: number, counts: { controlPlanes: number; workers: number }): SimNodeConfig[] {
  const node = (role: SimNodeConfig["role"], i: number): SimNodeConfig => ({
    name: `${role === "controlplane" ? "cp" : "worker"}-${i}`,
    address: `${netPrefix(net)}.${role === "controlplane" ? 10 + i : 20 + i}`,
    role,
    installDisk: "/dev/vda",
  });
  return [
    ...Array.from({ length: counts.controlPlanes }, (_, i) => node("controlplane", i + 1)),
    ...Array.from({ length: counts.workers }, (_, i) => node("worker", i + 1)),
  ];
}

/**
 * Stack config for simulated nodes: the provider talks to the simulated factory; the releases are
 * the simulator's (SIM_TALOS_VERSION); addons are off (they need the simulator's real API server
 * and a chart repository: test/engine/addons.test.ts turns them on with `extra`).
 */
export function simStackConfig(
  sim: Simulator,
  clusterName: string,
  nodes: SimNodeConfig[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const off = { enabled: false };
  return {
    // Installer images name the simulated factory too, which an upgrade pulls them from.
    "talos:imageFactoryUrl": sim.factoryUrl,
    "talos-cluster:clusterName": clusterName,
    "talos-cluster:endpoint": nodes[0]?.address,
    "talos-cluster:talosVersion": SIM_TALOS_VERSION,
    "talos-cluster:kubernetesVersion": SIM_KUBERNETES_VERSION,
    "talos-cluster:nodes": nodes,
    "talos-cluster:addons": { cilium: off, kubeletServingCertApprover: off, metricsServer: off },
    ...extra,
  };
}

/** `npm run drift -- ARGS` in a workspace. */
export function runDrift(ws: Workspace, ...args: string[]): RunResult {
  return ws.exec("npm run drift --", join(BIN, "vite-node"), [join(ROOT, "scripts", "drift.ts"), "--", ...args]);
}

/** `npm run snapshot -- ARGS` in a workspace. */
export function runSnapshot(ws: Workspace, ...args: string[]): RunResult {
  return ws.exec("npm run snapshot --", join(BIN, "vite-node"), [join(ROOT, "scripts", "snapshot.ts"), "--", ...args]);
}

/** Splits concatenated (pretty-printed) JSON values, as `pulumi up --json` writes its events. */
export function jsonStream(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") {
      if (depth++ === 0) start = i;
    } else if ((c === "}" || c === "]") && --depth === 0) {
      values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}

interface KubeconfigFile {
  "current-context": string;
  contexts: { name: string; context: { cluster: string; user: string } }[];
  clusters: { name: string; cluster: { server: string; "certificate-authority-data": string } }[];
  users: { name: string; user: { "client-certificate-data": string; "client-key-data": string } }[];
}

/**
 * GET a path of the API server a kubeconfig names, as kubectl would: its server, CA and client
 * certificate. Answers the status and the parsed JSON body (the Status object on an error).
 */
export function kubeGet(kubeconfig: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const kc = parse(kubeconfig) as KubeconfigFile;
  const context = kc.contexts.find((c) => c.name === kc["current-context"])?.context;
  const cluster = kc.clusters.find((c) => c.name === context?.cluster)?.cluster;
  const user = kc.users.find((u) => u.name === context?.user)?.user;
  if (cluster === undefined || user === undefined)
    throw new Error(`the kubeconfig's context ${kc["current-context"]} has no cluster or user`);
  const b64 = (s: string) => Buffer.from(s, "base64");
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, cluster.server),
      {
        ca: b64(cluster["certificate-authority-data"]),
        cert: b64(user["client-certificate-data"]),
        key: b64(user["client-key-data"]),
        headers: { accept: "application/json" },
        timeout: 10_000,
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => {
          text += d.toString();
        });
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new Error(`GET ${path}: ${res.statusCode}, not JSON: ${text.slice(0, 200)}`));
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: no answer within 10s`)));
    req.on("error", reject);
    req.end();
  });
}
