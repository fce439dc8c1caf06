// `npm run bench:rollout [-- --reboot 3s] [--workers N]`: what a rolling upgrade costs per node
// beyond the reboot itself. A real `pulumi up` moves 3 control planes and 6 simulated workers from
// v1.11.5 to v1.11.6 (workers one at a time unless --workers says more); the simulator's timeline
// gives each node's turn (from its upgrade call to the next node's, or the end of the up). Prints
// seconds per node, the simulated reboot time, and the overhead: the gates, the snapshot, the
// polls that notice the node is back, the checks through the cluster's real API server (the
// simulator runs etcd and kube-apiserver) and the engine around it. Not a test: the numbers depend
// on the machine; it exits 1 only when a step fails. Then a Kubernetes patch upgrade, the
// upgrade-k8s way, and its cost per node beyond the image pulls.

import { SUITES } from "../test/addresses";
import {
  controlPlaneFlags,
  downtimes,
  missingToolchain,
  Simulator,
  simNodes,
  simStackConfig,
  type TimelineEvent,
  Workspace,
} from "./engine";

/** How often a simulated node refreshes its static pods' status (Talos: 15 s). */
const STATIC_POD_LAG = "1s";
const USAGE = "usage: npm run bench:rollout [-- --reboot 3s] [--workers N]";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.benchRollout;

function parseArgs(argv: string[]): { reboot: number; workers: number } {
  let reboot = 3;
  let workers = 1;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === "--") continue;
    if (arg === "--reboot" && value !== undefined && /^\d+(\.\d+)?s$/.test(value)) {
      reboot = Number(value.slice(0, -1));
      i++;
    } else if (arg === "--workers" && value !== undefined && /^[1-9]\d*$/.test(value)) {
      workers = Number(value);
      i++;
    } else {
      console.error(`${USAGE}\nunknown or malformed argument: ${arg}`);
      process.exit(2);
    }
  }
  return { reboot, workers };
}

async function main(): Promise<void> {
  const { reboot, workers } = parseArgs(process.argv.slice(2));
  const missing = missingToolchain({ controlPlane: true });
  if (missing !== undefined) {
    console.error(`${missing}: run npm run setup first`);
    process.exit(1);
  }
  const nodes = simNodes(NET, { controlPlanes: 3, workers: 6 });
  const sim = await Simulator.start(
    nodes.map((n) => n.address),
    FACTORY_PORT,
    CONTROL_PORT,
    ["-reboot-time", `${reboot}s`, "-factory-versions", "v1.11.5,v1.11.6", "-static-pod-lag", STATIC_POD_LAG, ...controlPlaneFlags()],
  );
  const config = simStackConfig(sim, "bench-rollout", nodes, {
    "talos-cluster:upgrade": { maxUnavailableWorkers: workers, healthTimeout: "2m" },
  });
  const ws = new Workspace("bench-rollout", config);
  try {
    ws.must(["up", "--yes", "--skip-preview"]);
    const noop = time(() => ws.must(["up", "--yes", "--skip-preview"]));
    ws.writeConfig({ ...config, "talos-cluster:talosVersion": "v1.11.6" });
    const started = Date.now();
    const { result: total, events } = await sim.during(() => time(() => ws.must(["up", "--yes", "--skip-preview"])));
    report(events, nodes, { reboot, workers, total, noop, started, ended: started + total * 1000 });

    // A Kubernetes upgrade, 1.34.1 -> 1.34.2, the upgrade-k8s way: every image pre-pulled, then each
    // control-plane component on each control plane and each kubelet applied in place and awaited
    // (static pods at their new config version and Ready, the kubelet's Node Ready at the new
    // version), then the bootstrap manifests synced. No reboot.
    ws.writeConfig({ ...config, "talos-cluster:talosVersion": "v1.11.6", "talos-cluster:kubernetesVersion": "1.34.2" });
    const { result: kubernetes, events: k8sEvents } = await sim.during(() => time(() => ws.must(["up", "--yes", "--skip-preview"])));
    const pulls = k8sEvents.filter((e) => e.event === "image-pull").length;
    const steps = k8sEvents.filter((e) => e.event === "component").length;
    console.log(
      `Kubernetes upgrade (1.34.1 -> 1.34.2, component by component, no reboot): ${kubernetes.toFixed(1)}s for ${steps} component restarts ` +
        `after ${pulls} image pulls; per node beyond the no-op up: ${((kubernetes - noop) / nodes.length).toFixed(2)}s ` +
        `(the simulator pulls at once, so this is the cost beyond the image pulls; it refreshes static pod status every ${STATIC_POD_LAG}, Talos every 15 s)`,
    );
  } finally {
    sim.dispose();
    ws.dispose();
  }
}

function time(f: () => void): number {
  const t = Date.now();
  f();
  return (Date.now() - t) / 1000;
}

function report(
  events: TimelineEvent[],
  nodes: { name: string; address: string }[],
  run: { reboot: number; workers: number; total: number; noop: number; started: number; ended: number },
): void {
  const name = new Map(nodes.map((n) => [n.address, n.name]));
  const calls = events.filter((e) => e.event === "upgrade").map((e) => ({ node: e.node, at: Date.parse(e.at) }));
  const downs = downtimes(events);
  const rows = calls.map((c, i) => {
    const down = downs.find((d) => d.node === c.node);
    // A turn ends where the next node's starts; the last ends with the up.
    const end = calls[i + 1]?.at ?? run.ended;
    return {
      node: name.get(c.node) ?? c.node,
      turn: (end - c.at) / 1000,
      down: down === undefined ? Number.NaN : (down.to - down.from) / 1000,
    };
  });
  const firstCall = calls[0]?.at ?? run.started;
  console.log("| node | turn | down (the simulated reboot) | overhead |\n| --- | --- | --- | --- |");
  for (const r of rows) console.log(`| ${r.node} | ${r.turn.toFixed(2)} s | ${r.down.toFixed(2)} s | ${(r.turn - r.down).toFixed(2)} s |`);
  const perNode = (run.total - run.noop) / rows.length;
  const sequential = run.workers === 1;
  console.log(
    [
      `nodes upgraded: ${rows.length} (3 control planes, 6 workers, ${run.workers} at a time); simulated reboot ${run.reboot}s`,
      `up with the rollout: ${run.total.toFixed(1)}s; the same up with nothing to do: ${run.noop.toFixed(1)}s`,
      `engine start to the first upgrade call: ${((firstCall - run.started) / 1000).toFixed(1)}s`,
      `seconds per node (rollout up minus no-op up, over ${rows.length} nodes): ${perNode.toFixed(2)}s` +
        (sequential ? `; beyond the reboot: ${(perNode - run.reboot).toFixed(2)}s` : ""),
    ].join("\n"),
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
