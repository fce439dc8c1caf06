// Faults with the real engine and provider against simulated nodes: a node that is down during the
// first up, and a node that belongs to another cluster.
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import { describeEngine, runDrift, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.faults;

// Short, so a dead node fails the run in seconds; the provider retries until this runs out.
const NODE_TIMEOUT = "15s";

/** The provider's error as the person running `up` sees it. */
// The first resource error of an up's diagnostics (not the stack's closing "update failed").
const errorLine = (output: string) => output.split("\n").find((l) => /error: /.test(l) && !l.includes("error: update failed")) ?? "";

describeEngine("faults: a dead node, a node of another cluster, nodes on an old release", () => {
  let sim: Simulator;
  let ws: Workspace;
  let nodes: SimNodeConfig[];
  const workspaces: Workspace[] = [];

  beforeAll(async () => {
    nodes = simNodes(NET, { controlPlanes: 1, workers: 2 });
    sim = await Simulator.start(
      nodes.map((n) => n.address),
      FACTORY_PORT,
      CONTROL_PORT,
      // Nodes that booted an older release than the stack declares: drift only a node read shows.
      ["-talos-version", "v1.11.4"],
    );
    ws = new Workspace("faults", simStackConfig(sim, "faults", nodes, { "talos-cluster:nodeTimeout": NODE_TIMEOUT }));
    workspaces.push(ws);
  });
  afterAll(() => {
    sim?.dispose();
    for (const w of workspaces) w.dispose();
  });

  it("fails only the dead node's apply, with the reason, while the other nodes complete", async () => {
    const dead = nodes[2];
    if (dead === undefined) throw new Error("fixture has no third node");
    await sim.stop(dead.address);

    const up = ws.run(["up", "--yes", "--continue-on-error"]);
    expect(up.code).not.toBe(0);
    expect(up.output).toContain(`faults-${dead.name}`);
    console.log(errorLine(up.output));
    expect(up.output).toMatch(new RegExp(`dial tcp ${dead.address.replaceAll(".", "\\.")}:50000: connect: connection refused`));
    // Not only `creating (Ns)` until the timeout: the wait before the first apply shows where it is.
    const waiting = up.output
      .split("\n")
      .find((l) => l.includes(`waiting for ${dead.name} at ${dead.address}:50000 to accept a connection`));
    expect(waiting, up.output).toMatch(/last attempt: dial tcp .*connection refused; \d+s left of 15s/);

    const state = await sim.nodes();
    for (const n of nodes.slice(0, 2)) expect(state.find((s) => s.address === n.address)).toMatchObject({ configured: true, applies: 1 });
    expect(state.find((s) => s.address === dead.address)).toMatchObject({ configured: false, applies: 0 });
    expect(state.find((s) => s.address === nodes[0]?.address)?.bootstrapCalls).toBe(1);
  });

  it("converges once the node is back, with nothing lost or redone", async () => {
    const dead = nodes[2];
    if (dead === undefined) throw new Error("fixture has no third node");
    await sim.start(dead.address);
    ws.must(["up", "--yes"]);
    const state = await sim.nodes();
    for (const n of state) expect(n, n.address).toMatchObject({ configured: true, applies: 1 });
    expect(state.reduce((sum, n) => sum + n.bootstrapCalls, 0)).toBe(1);
    ws.must(["preview", "--expect-no-changes"]);
  });

  it("reports nodes running an older release than the stack declares, read on refresh", () => {
    const r = runDrift(ws, "-s", "faults");
    const [head, items = ""] = r.stdout.trim().split(" resources: ");
    // Each node's NodeState, and the Rollout, which reads the nodes on refresh too.
    expect(head).toBe(`faults: drift: ${nodes.length + 1}`);
    // The engine refreshes in parallel; the order of the steps is not the stack's.
    const sorted = items.split("; ").sort();
    expect(sorted.slice(0, nodes.length)).toEqual(
      nodes.map((n) => `update talosnode:index:NodeState::faults-${n.name}-state (talosVersion)`).sort(),
    );
    for (const i of nodes.keys()) {
      const rollout = new RegExp(`^update talosnode:index:Rollout::faults-rollout \\(.*nodes\\[${i}\\]\\.talosVersion.*\\)$`);
      expect(sorted[nodes.length]).toMatch(rollout);
    }
    expect(r.code).toBe(1);
    expect(ws.run(["preview", "--refresh", "--diff"]).output).toMatch(/talosVersion\s*:\s*"v1\.11\.4"\s*=>\s*"v1\.11\.5"/);
  });

  it("refuses to configure a node that another cluster owns: its CA does not match", async () => {
    const owned = nodes[1];
    if (owned === undefined) throw new Error("fixture has no second node");
    const before = await sim.node(owned.address);
    expect(before.configured, "the tests above configure this node first").toBe(true);
    // A second cluster, with its own secrets, that lists an already configured node as its own.
    const intruder = new Workspace(
      "intruder",
      simStackConfig(sim, "intruder", [{ ...owned, name: "intruder-cp", role: "controlplane" }], {
        "talos-cluster:nodeTimeout": NODE_TIMEOUT,
      }),
    );
    workspaces.push(intruder);
    const up = intruder.run(["up", "--yes", "--continue-on-error"]);
    expect(up.code).not.toBe(0);
    expect(up.output).toContain("intruder-intruder-cp");
    console.log(errorLine(up.output));
    expect(errorLine(up.output)).toMatch(/certificate|authentication handshake failed/);
    const after = await sim.node(owned.address);
    expect(after.applies).toBe(before.applies);
    expect(after.hostname).toBe(owned.name);
  });

  it("shows a node that does not answer while it waits: the node, its address and port, the last error, the time left", async () => {
    const dead = nodes[2];
    if (dead === undefined) throw new Error("fixture has no third node");
    await sim.stop(dead.address);
    try {
      const up = ws.run(["up", "--yes", "--refresh"]);
      expect(up.code).not.toBe(0);
      const lines = up.output.split("\n");
      const where = `waiting for faults-${dead.name}-state at ${dead.address}:50000 to answer over mutual TLS`;
      const progress = lines.findIndex((l) => l.includes(where));
      expect(progress, up.output).toBeGreaterThanOrEqual(0);
      console.log(lines[progress]);
      expect(lines[progress]).toMatch(/last attempt: version: Unavailable: .*connection refused.*; \d+s left of 15s/);
      const failure = lines.findIndex((l) => l.includes("not answering over mutual TLS within 15s"));
      expect(failure, up.output).toBeGreaterThan(progress);
    } finally {
      await sim.start(dead.address);
    }
  });
});
