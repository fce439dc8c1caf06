// What `pulumi preview --diff` shows for a one-line change of the cluster-wide patches: a plan a
// person can read, naming each node that changes and the config key, not every node's whole config.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEngine, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const STACK = "pd";
const NET = 61;

describeEngine("preview --diff of a one-line patch on 5 nodes", () => {
  let sim: Simulator;
  let ws: Workspace;
  let nodes: SimNodeConfig[];
  let config: Record<string, unknown>;

  beforeAll(async () => {
    nodes = simNodes(NET, { controlPlanes: 3, workers: 2 });
    sim = await Simulator.start(
      nodes.map((n) => n.address),
      18960,
      18961,
    );
    config = simStackConfig(sim, STACK, nodes, { "talos-cluster:nodeTimeout": "30s" });
    ws = new Workspace(STACK, config);
    ws.must(["up", "--yes", "--skip-preview"]);
  });
  afterAll(() => {
    sim?.dispose();
    ws?.dispose();
  });

  it("prints the plan", () => {
    ws.writeConfig({ ...config, "talos-cluster:patches": { all: [{ machine: { sysctls: { "net.core.somaxconn": "65535" } } }] } });
    const preview = ws.must(["preview", "--diff"]);
    writeFileSync("/tmp/diffhome/preview.txt", `STDOUT\n${preview.stdout}\nSTDERR\n${preview.stderr}`);
    writeFileSync("/tmp/diffhome/preview-plain.txt", ws.must(["preview"]).output);
    expect(preview.output).toContain("somaxconn");
  });
});
