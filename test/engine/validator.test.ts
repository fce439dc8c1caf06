// Talos' own validator in real previews and ups: a typo in a patch stops the run before anything
// is created or changed, on a new stack and on one already deployed, with the stack key and the
// unknown Talos key named and no stack trace.
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import { describeEngine, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.validator;

const TYPOS: { where: string; key: string; set: (config: Record<string, unknown>, nodes: SimNodeConfig[]) => Record<string, unknown> }[] = [
  {
    where: "patches.all",
    key: "talos-cluster:patches.all[0]: unknown key machine.tyme",
    set: (c) => ({ ...c, "talos-cluster:patches": { all: [{ machine: { tyme: { servers: ["time.example.com"] } } }] } }),
  },
  {
    where: "patches.worker",
    key: "talos-cluster:patches.worker[0]: unknown key machine.kubelet.extraArgz",
    set: (c) => ({ ...c, "talos-cluster:patches": { worker: [{ machine: { kubelet: { extraArgz: { v: "2" } } } }] } }),
  },
  {
    where: "a node's patches",
    key: "talos-cluster:nodes[2] (worker-2).patches[0]: unknown key machine.kubelett",
    set: (c, nodes) => ({
      ...c,
      "talos-cluster:nodes": nodes.map((n, i) => (i === 2 ? { ...n, patches: [{ machine: { kubelett: { image: "x" } } }] } : n)),
    }),
  },
];
const STACK_TRACE = /^\s+at .+[(:]\d+:\d+\)?$/m;

describeEngine("Talos' validator before any resource", () => {
  let sim: Simulator;
  let nodes: SimNodeConfig[];
  const workspaces: Workspace[] = [];
  const applies = async () => (await sim.nodes()).reduce((sum, n) => sum + n.applies, 0);

  beforeAll(async () => {
    nodes = simNodes(NET, { controlPlanes: 1, workers: 2 });
    sim = await Simulator.start(
      nodes.map((n) => n.address),
      FACTORY_PORT,
      CONTROL_PORT,
    );
  });
  afterAll(() => {
    sim?.dispose();
    for (const w of workspaces) w.dispose();
  });

  for (const typo of TYPOS) {
    it(`refuses a typo in ${typo.where} on a new stack: the preview names it, the up creates nothing`, async () => {
      const ws = new Workspace("fresh", typo.set(simStackConfig(sim, "fresh", nodes), nodes));
      workspaces.push(ws);
      const preview = ws.run(["preview"]);
      expect(preview.code).not.toBe(0);
      expect(preview.output).toContain(typo.key);
      expect(preview.output).not.toMatch(STACK_TRACE);
      const up = ws.run(["up", "--yes"]);
      expect(up.code).not.toBe(0);
      expect(up.output).toContain(typo.key);
      expect(ws.state().resources.filter((r) => r.type !== "pulumi:pulumi:Stack")).toEqual([]);
      expect(await applies()).toBe(0);
    });
  }

  it("refuses each typo on a deployed stack too, and changes nothing there", async () => {
    const config = simStackConfig(sim, "deployed", nodes);
    const ws = new Workspace("deployed", config);
    workspaces.push(ws);
    ws.must(["up", "--yes"]);
    const before = { resources: ws.state().resources.length, applies: await applies() };
    for (const typo of TYPOS) {
      ws.writeConfig(typo.set(config, nodes));
      const up = ws.run(["up", "--yes"]);
      expect(up.code, typo.where).not.toBe(0);
      expect(up.output).toContain(typo.key);
      expect(up.output).not.toMatch(STACK_TRACE);
      expect({ resources: ws.state().resources.length, applies: await applies() }).toEqual(before);
    }
    ws.writeConfig(config);
    ws.must(["preview", "--expect-no-changes"]);
  });
});
