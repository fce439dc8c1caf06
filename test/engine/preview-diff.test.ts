// What `pulumi preview --diff` shows for a one-line change of the cluster-wide patches on 5 nodes: a
// plan a person can read, naming the config key by its path on each node's state and each node the
// Rollout changes and how (Talos' dry run), not every node's whole config (issue 26: 643 lines).
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import { describeEngine, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const STACK = "pd";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.previewDiff;
const KEY = 'machine.sysctls["net.core.somaxconn"]';

describeEngine("preview --diff of a one-line patch on 5 nodes", () => {
  let sim: Simulator;
  let ws: Workspace;
  let nodes: SimNodeConfig[];
  let config: Record<string, unknown>;

  beforeAll(async () => {
    nodes = simNodes(NET, { controlPlanes: 3, workers: 2 });
    sim = await Simulator.start(
      nodes.map((n) => n.address),
      FACTORY_PORT,
      CONTROL_PORT,
    );
    config = simStackConfig(sim, STACK, nodes, { "talos-cluster:nodeTimeout": "30s" });
    ws = new Workspace(STACK, config);
    ws.must(["up", "--yes", "--skip-preview"]);
  });
  afterAll(() => {
    sim?.dispose();
    ws?.dispose();
  });

  it("reads like a plan: the key's path on each node's state, each node the rollout changes and how", async () => {
    const applies = (await sim.nodes()).map((s) => [s.hostname, s.applies]);
    ws.writeConfig({ ...config, "talos-cluster:patches": { all: [{ machine: { sysctls: { "net.core.somaxconn": "65535" } } }] } });
    const preview = ws.must(["preview", "--diff"]);
    const lines = preview.output.trimEnd().split("\n");
    expect(lines.length, preview.output).toBeLessThan(60);
    // Each NodeState's config diff is the one key, with its path and value (not a secret).
    expect(preview.stdout.split(`+ ${KEY}: "65535"`).length - 1, preview.stdout).toBe(nodes.length);
    // No whole document: a key every config has and the patch does not touch is not printed.
    expect(preview.output).not.toContain("kubePrism");
    // The Rollout's plan: every node in the rollout's order, the key, and Talos' dry run answer.
    const plan = nodes
      .filter((n) => n.role === "controlplane")
      .concat(nodes.filter((n) => n.role === "worker"))
      .map((n) => `${n.name}: config + ${KEY}; in place (Talos' dry run: no reboot)`);
    const planned = lines.map((l) => l.trim()).filter((l) => plan.includes(l));
    expect([...new Set(planned)], preview.output).toEqual(plan);
    // A preview's dry run applies nothing.
    expect((await sim.nodes()).map((s) => [s.hostname, s.applies])).toEqual(applies);
  });
});
