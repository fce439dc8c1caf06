// `npm run demo [-- --keep]`: the program's main job on simulated machines, nothing outside this
// machine touched. Starts 3 control planes and 2 workers (test/sim) on loopback, runs a real
// `pulumi up` of a stack `demo` on a local backend in .demo/ (git-ignored), shows what came out,
// then the day-two story: a second up that changes nothing, and a change made on a node behind
// Pulumi's back that the refresh-preview names. Stops the simulator unless --keep.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { DEFAULT_KUBERNETES_VERSION, DEFAULT_TALOS_VERSION } from "../lib/versions";
import { SUITES } from "../test/addresses";
import { controlPlaneFlags, missingToolchain, ROOT, type SimNodeConfig, Simulator, simStackConfig, Workspace } from "./engine";

const DIR = join(ROOT, ".demo");
const PID_FILE = join(DIR, "sim.pid");
const NET = `127.0.${SUITES.demo.nets[0]}`;
const VIP = `${NET}.10`;
const PASSPHRASE = "engine-tests";
/** The demo runs what a new stack gets; the node "downgraded by hand" runs the patch before it. */
const DEMO_TALOS_VERSION = DEFAULT_TALOS_VERSION;
const DEMO_HAND_VERSION = "v1.14.0";
const NODES: SimNodeConfig[] = [
  ...[1, 2, 3].map((i) => ({ name: `cp-${i}`, address: `${NET}.${10 + i}`, role: "controlplane" as const, installDisk: "/dev/vda" })),
  ...[1, 2].map((i) => ({ name: `worker-${i}`, address: `${NET}.${20 + i}`, role: "worker" as const, installDisk: "/dev/vda" })),
];

const keep = process.argv.includes("--keep");
const step = (text: string) => console.log(`\n==> ${text}`);
const fail = (text: string): never => {
  console.error(`demo: ${text}`);
  process.exit(1);
};

/** A port the kernel says is free on loopback. */
function freePort(): Promise<number> {
  return new Promise((done, failed) => {
    const server = createServer();
    server.once("error", failed);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? done(address.port) : failed(new Error("no port"))));
    });
  });
}

/** Whether host:port can be listened on (a running simulator holds the node addresses' port 50000). */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, host, () => server.close(() => done(true)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The addresses of the demo's nodes of a role, comma-separated as talosctl's node lists. */
const addresses = (role: SimNodeConfig["role"]): string =>
  NODES.filter((n) => n.role === role)
    .map((n) => n.address)
    .join(",");

async function preflight(): Promise<void> {
  const missing = missingToolchain({ controlPlane: true });
  if (missing !== undefined) fail(`${missing} (the demo needs the toolchain setup builds)`);
  const kept = existsSync(PID_FILE) ? Number(readFileSync(PID_FILE, "utf8")) : undefined;
  if (kept !== undefined && alive(kept)) {
    fail(
      `the simulator of an earlier \`npm run demo -- --keep\` is still running (pid ${kept}): stop it with \`kill ${kept}\`, then run the demo again`,
    );
  }
  for (const node of NODES) {
    if (!(await canListen(node.address, 50000))) {
      fail(`${node.address}:50000 is in use (another simulator?); free it, e.g. find it with \`ss -ltnp | grep ${node.address}:50000\``);
    }
  }
}

async function main(): Promise<void> {
  await preflight();
  const started = Date.now();

  step(`Starting simulated Talos nodes on ${NET}.x (3 control planes, 2 workers) and an Image Factory`);
  // Each run starts from a clean folder: the nodes are new, so an old stack would describe nothing.
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const sim = await Simulator.start(
    NODES.map((n) => n.address),
    await freePort(),
    await freePort(),
    ["-talos-version", DEMO_TALOS_VERSION, "-factory-versions", `${DEMO_HAND_VERSION},${DEMO_TALOS_VERSION}`, ...controlPlaneFlags()],
    keep ? join(DIR, "sim.log") : undefined,
    "127.0.0.1",
  );
  const stop = () => sim.dispose();
  process.on("exit", () => {
    if (!keep) stop();
  });
  process.on("SIGINT", () => process.exit(130));

  const config = simStackConfig(sim, "demo", NODES, {
    "talos-cluster:endpoint": VIP,
    "talos-cluster:network": { nodeSubnet: `${NET}.0/24`, vip: { address: VIP, interface: "enp1s0" } },
    "talos-cluster:nodeTimeout": "60s",
    // The release and Kubernetes a new stack gets, on a cluster created on it (its 1.14 contract).
    "talos-cluster:talosVersion": DEMO_TALOS_VERSION,
    "talos-cluster:kubernetesVersion": DEFAULT_KUBERNETES_VERSION,
  });
  const ws = new Workspace("demo", config, undefined, join(DIR, "project"));
  console.log(
    `Stack "demo" on a local backend in .demo/project/.state (passphrase "${PASSPHRASE}", set for this run), on Talos ${DEMO_TALOS_VERSION} with Kubernetes ${DEFAULT_KUBERNETES_VERSION}, what a new stack gets. The Kubernetes addons are off: the simulator runs a real etcd and kube-apiserver, and no pods.`,
  );

  step("pulumi up: schematic, machine secrets, one config per node, bootstrap, node states");
  if (ws.show(["up", "--yes", "--skip-preview"]) !== 0) fail("pulumi up failed (output above)");

  const outputs = JSON.parse(ws.must(["stack", "output", "--json", "--show-secrets"]).stdout) as Record<string, unknown>;
  const nodes = outputs.nodes as {
    name: string;
    role: string;
    address: string;
    runningTalosVersion: string;
    bootedSchematicId: string;
    kubernetesVersion: string;
  }[];
  console.log(`\nschematic     ${String(outputs.schematicId)} (siderolabs/intel-ucode)`);
  console.log(`installer     ${String(outputs.installerImage)}`);
  console.log("nodes         name       role          address         Talos     schematic      Kubernetes");
  for (const n of nodes) {
    console.log(
      `              ${n.name.padEnd(10)} ${n.role.padEnd(13)} ${n.address.padEnd(15)} ${n.runningTalosVersion.padEnd(9)} ${n.bootedSchematicId.slice(0, 12)}   ${n.kubernetesVersion}`,
    );
  }
  for (const file of ["kubeconfig", "talosconfig"]) {
    const path = join(DIR, file);
    writeFileSync(path, String(outputs[file]), { mode: 0o600 });
    chmodSync(path, 0o600);
  }
  console.log("credentials   .demo/kubeconfig and .demo/talosconfig (mode 0600, git-ignored)");

  step("A second pulumi up changes nothing");
  ws.must(["up", "--yes", "--skip-preview", "--expect-no-changes"]);
  console.log("no changes: every resource is as declared");

  const target = NODES[1] as SimNodeConfig;
  step(`Someone downgrades ${target.name} to Talos ${DEMO_HAND_VERSION} by hand; pulumi preview --refresh reads every node`);
  await sim.set(target.address, { talosVersion: DEMO_HAND_VERSION });
  const preview = ws.run(["preview", "--refresh", "--diff"]);
  const seen = preview.output.split("\n").filter((l) => /NodeState|talosVersion\s*:/.test(l));
  for (const line of seen) console.log(line.trimEnd());
  if (!seen.some((l) => l.includes(`"${DEMO_HAND_VERSION}" => "${DEMO_TALOS_VERSION}"`)))
    fail("the refresh-preview did not name the change (output above)");

  step(`Done in ${Math.round((Date.now() - started) / 1000)} s`);
  if (keep) {
    writeFileSync(PID_FILE, String(sim.pid));
    console.log(`The simulator keeps running (pid ${sim.pid}, log .demo/sim.log). Try:
  cd .demo/project
  export PULUMI_BACKEND_URL=file://${join(DIR, "project", ".state")} PULUMI_CONFIG_PASSPHRASE=${PASSPHRASE}
  npx pulumi stack output nodes        # what runs where
  npx pulumi preview --refresh --diff  # ${target.name}'s drift
  npx talosctl --talosconfig ../talosconfig -n ${target.address} version  # the real talosctl: ${target.name} runs ${DEMO_HAND_VERSION}
  npx talosctl --talosconfig ../talosconfig -n ${NODES[0]?.address} health --server=false --control-plane-nodes ${addresses("controlplane")} --worker-nodes ${addresses("worker")} --k8s-endpoint ${NODES[0]?.address}  # Talos' cluster checks, run by talosctl (kube-proxy and CoreDNS: SKIP, not deployed)
  npx pulumi up --refresh --yes        # the rollout upgrades ${target.name} back to ${DEMO_TALOS_VERSION}, through its gates
Stop it with: kill ${sim.pid}`);
  } else {
    stop();
    console.log("Simulator stopped. `npm run demo -- --keep` leaves it running to try commands against it.");
  }
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
