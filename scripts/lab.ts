// `npm run lab [-- up|down|status]`: simulated machines to practise on before touching hardware.
// `up` (the default) starts 3 control planes and 3 workers (test/sim) on 127.0.66.x with a real
// etcd and kube-apiserver, an Image Factory, and the fixture chart repository serving the addons'
// charts (scripts/chart-repo.ts), so the addons stay on; writes the stack file Pulumi.lab.yaml
// (git-ignored, kept across restarts: edit it like any stack) and makes the stack `lab` on a local
// backend in .lab/state. It leaves everything running; `down` stops it. worker-3 is not in the
// stack: it waits in maintenance mode, as a machine booted from the ISO does, to be added.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ADDON_DEFAULTS, DEFAULT_KUBERNETES_VERSION, DEFAULT_TALOS_VERSION } from "../lib/versions";
import { SUITES } from "../test/addresses";
import { ChartRepo } from "./chart-repo";
import {
  controlPlaneFlags,
  missingToolchain,
  PULUMI,
  ROOT,
  SIM_KUBERNETES_VERSION,
  SIM_TALOS_VERSION,
  type SimNode,
  Simulator,
} from "./engine";

const {
  nets: [LAB_NET],
  ports: [FACTORY_PORT, CONTROL_PORT, CHARTS_PORT],
} = SUITES.lab;
const NET = `127.0.${LAB_NET}`;
/** The factory, the simulator's control endpoint and the chart repository listen here. */
const HOST = `${NET}.1`;
const PORTS = { factory: FACTORY_PORT, control: CONTROL_PORT, charts: CHARTS_PORT };
const FACTORY = `${HOST}:${PORTS.factory}`;
const CHARTS = `http://${HOST}:${PORTS.charts}`;
const DIR = join(ROOT, ".lab");
const STATE = join(DIR, "state");
const STACK_FILE = join(ROOT, "Pulumi.lab.yaml");
const PASSPHRASE = "lab";
const MACHINES = [
  ...[1, 2, 3].map((i) => ({ name: `cp-${i}`, address: `${NET}.${10 + i}`, role: "controlplane" })),
  ...[1, 2, 3].map((i) => ({ name: `worker-${i}`, address: `${NET}.${20 + i}`, role: "worker" })),
];
/** The machine left out of the stack, waiting to be added. */
const SPARE = MACHINES[MACHINES.length - 1] as (typeof MACHINES)[number];
/** Releases the simulated factory offers: the lab's, one newer to upgrade to, and an older one. */
const TALOS_VERSIONS = [SIM_TALOS_VERSION, "v1.11.6", "v1.10.7", "v1.13.9", DEFAULT_TALOS_VERSION];
const PIDS = { sim: join(DIR, "sim.pid"), charts: join(DIR, "charts.pid") };

const fail = (text: string): never => {
  console.error(`lab: ${text}`);
  process.exit(1);
};

function pidOf(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8"));
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, host, () => server.close(() => done(true)));
  });
}

/** The stack file a first `npm run lab` writes; the user's edits are kept after that. */
function stackFile(): string {
  const node = (m: (typeof MACHINES)[number]) => `    - { name: ${m.name}, address: ${m.address}, role: ${m.role}, installDisk: /dev/vda }`;
  return `# The lab: machines simulated by \`npm run lab\` (git-ignored). Edit it like any stack, then
# \`npm run pulumi -- up -s lab\`. The lines marked "lab:" are what differs from real machines.
config:
  # lab: the simulated Image Factory (installer images name its host too); on hardware, leave it
  # out (the public factory).
  talos:imageFactoryUrl: http://${FACTORY}
  talos-cluster:clusterName: lab
  # lab: the first control plane's API server; on hardware, a VIP or load balancer (see network.vip).
  talos-cluster:endpoint: ${MACHINES[0]?.address}
  # lab: the simulator's release, older than the one a new stack gets (${DEFAULT_TALOS_VERSION} with
  # Kubernetes ${DEFAULT_KUBERNETES_VERSION}); on hardware, leave both out for those.
  talos-cluster:talosVersion: ${SIM_TALOS_VERSION}
  talos-cluster:kubernetesVersion: ${SIM_KUBERNETES_VERSION}
  talos-cluster:nodeTimeout: 60s
  # lab: fixture charts standing in for Cilium and metrics-server, and the approver's manifest, served
  # by \`npm run lab\`; each installs a ConfigMap with its values (nothing runs: no containers here).
  # On hardware, leave out the repository keys.
  talos-cluster:addons:
    cilium: { repository: ${CHARTS}/charts }
    kubeletServingCertApprover: { repository: ${CHARTS}/approver }
    metricsServer: { repository: ${CHARTS}/charts }
  talos-cluster:nodes:
${MACHINES.filter((m) => m !== SPARE)
  .map(node)
  .join("\n")}
    # ${SPARE.name} is booted and waits in maintenance mode: uncomment it to add a node.
    # ${node(SPARE).trim()}
`;
}

/** The CLI on the lab's backend, as the README's commands run it. */
function pulumi(args: string[]): { code: number; output: string } {
  const r = spawnSync(PULUMI, [...args, "--non-interactive"], {
    cwd: ROOT,
    env: { ...process.env, PULUMI_BACKEND_URL: `file://${STATE}`, PULUMI_CONFIG_PASSPHRASE: PASSPHRASE, PULUMI_SKIP_UPDATE_CHECK: "true" },
    encoding: "utf8",
  });
  return { code: r.status ?? 1, output: `${r.stdout}${r.stderr}` };
}

async function up(): Promise<void> {
  const missing = missingToolchain({ controlPlane: true });
  if (missing !== undefined) fail(`${missing} (the lab needs the toolchain setup builds)`);
  const running = pidOf(PIDS.sim);
  if (running !== undefined) {
    console.log(`The lab is already running (simulator pid ${running}); \`npm run lab -- down\` stops it.`);
    await status();
    return;
  }
  stopCharts();
  for (const [host, port] of [
    ...Object.values(PORTS).map((p) => [HOST, p] as const),
    ...MACHINES.map((m) => [m.address, 50000] as const),
  ]) {
    if (!(await canListen(host, port))) fail(`${host}:${port} is in use; find what holds it with \`ss -ltnp | grep ${host}:${port}\``);
  }

  // New machines: the state of an earlier lab describes nothing that exists any more.
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(STATE, { recursive: true });
  const charts = await ChartRepo.start(
    PORTS.charts,
    [
      { name: ADDON_DEFAULTS.cilium.chart, versions: [ADDON_DEFAULTS.cilium.version] },
      { name: ADDON_DEFAULTS.metricsServer.chart, versions: [ADDON_DEFAULTS.metricsServer.version] },
    ],
    { versions: [ADDON_DEFAULTS.kubeletServingCertApprover.version], image: ADDON_DEFAULTS.kubeletServingCertApprover.image },
    { host: HOST, keep: join(DIR, "charts") },
  );
  writeFileSync(PIDS.charts, String(charts.pid));
  const sim = await Simulator.start(
    MACHINES.map((m) => m.address),
    PORTS.factory,
    PORTS.control,
    ["-factory-versions", TALOS_VERSIONS.join(","), ...controlPlaneFlags()],
    join(DIR, "sim.log"),
    HOST,
  );
  writeFileSync(PIDS.sim, String(sim.pid));

  // `stack init` writes the stack file's encryption salt: first, so the comments of ours survive
  // (the CLI rewrites a file it adds to); a file the user kept only gets used.
  const kept = existsSync(STACK_FILE);
  const init = pulumi(["stack", "init", "lab"]);
  if (init.code !== 0) fail(`pulumi stack init lab failed:\n${init.output}`);
  if (!kept) {
    const salt = /^encryptionsalt: .*$/m.exec(readFileSync(STACK_FILE, "utf8"))?.[0];
    if (salt === undefined) fail("pulumi stack init lab wrote no encryption salt into Pulumi.lab.yaml");
    writeFileSync(STACK_FILE, `${stackFile()}${salt}\n`);
  }

  console.log(`The lab runs: ${MACHINES.length} simulated machines on ${NET}.x, each waiting for its config (maintenance mode):
  ${MACHINES.map((m) => `${m.name} ${m.address}`).join(", ")}
  control planes run a real etcd and kube-apiserver once bootstrapped (https://${MACHINES[0]?.address}:6443)
  Image Factory http://${FACTORY}, chart repository ${CHARTS} (fixture charts), Talos ${TALOS_VERSIONS.join(", ")} on offer
Stack "lab": ${kept ? "Pulumi.lab.yaml kept as you left it (delete it for the default one)" : "Pulumi.lab.yaml written"}, on a local backend in .lab/state (passphrase "${PASSPHRASE}").
Simulator pid ${sim.pid} (log .lab/sim.log), chart server pid ${charts.pid}; \`npm run lab -- down\` stops both.
Next:
  export PULUMI_BACKEND_URL=file://$PWD/.lab/state PULUMI_CONFIG_PASSPHRASE=${PASSPHRASE}
  npm run pulumi -- up -s lab`);
}

function stopCharts(): void {
  const pid = pidOf(PIDS.charts);
  if (pid !== undefined) process.kill(pid, "SIGTERM");
}

async function down(): Promise<void> {
  const sim = pidOf(PIDS.sim);
  const charts = pidOf(PIDS.charts);
  if (sim === undefined && charts === undefined) {
    console.log("The lab is not running.");
    return;
  }
  for (const pid of [sim, charts]) if (pid !== undefined) process.kill(pid, "SIGTERM");
  // The simulator stops its etcd and kube-apiserver before it exits: wait for it, bounded.
  const deadline = Date.now() + 15_000;
  while (pidOf(PIDS.sim) !== undefined || pidOf(PIDS.charts) !== undefined) {
    if (Date.now() > deadline) fail(`the lab did not stop within 15 s (pids ${sim ?? ""} ${charts ?? ""})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  rmSync(PIDS.sim, { force: true });
  rmSync(PIDS.charts, { force: true });
  console.log(
    "The lab is stopped. Pulumi.lab.yaml stays; the next `npm run lab` starts new machines and a new stack state (.lab/ is remade).",
  );
}

async function status(): Promise<void> {
  const sim = pidOf(PIDS.sim);
  if (sim === undefined) {
    console.log("The lab is not running: `npm run lab` starts it.");
    return;
  }
  const res = await fetch(`http://${HOST}:${PORTS.control}/state`);
  const nodes = ((await res.json()) as { nodes: SimNode[] }).nodes;
  console.log(`simulator pid ${sim}, chart server pid ${pidOf(PIDS.charts) ?? "(not running)"}`);
  console.log("machine         address        role           state        Talos");
  for (const n of nodes) {
    const name = MACHINES.find((m) => m.address === n.address)?.name ?? "";
    const state = !n.up ? "down" : n.configured ? (n.bootstrapped ? "bootstrapped" : "configured") : "maintenance";
    console.log(
      `${name.padEnd(15)} ${n.address.padEnd(14)} ${(n.configured ? n.role : "").padEnd(14)} ${state.padEnd(12)} ${n.talosVersion}`,
    );
  }
}

const commands: Record<string, () => Promise<void>> = { up, down, status };
const command = process.argv.slice(2).find((a) => a !== "--") ?? "up";
const run = commands[command];
if (run === undefined) fail(`unknown command "${command}": npm run lab [-- up|down|status]`);
else run().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
