// Live node state in previews: the project's talosnode provider reads every node on refresh, so a
// change made on a node itself (another release, another image, an edited config) shows as that
// node's NodeState drifting, in `preview --refresh` and in `npm run drift`.
import { afterAll, beforeAll, expect, it } from "vitest";
import { TYPES } from "../../lib/tokens";
import { SUITES } from "../addresses";
import { describeEngine, runDrift, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.nodestate;

const STACK = "ns";
const NODE_TIMEOUT = "10s";
const INTEL_UCODE_SCHEMATIC = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8";
const OTHER_SCHEMATIC = "0".repeat(64);
const stateOf = (node: SimNodeConfig) => `talosnode:index:NodeState::${STACK}-${node.name}-state`;
/** The Rollout reads the nodes on refresh too, so a node changed by hand drifts in it as `nodes[i]`. */
const rolloutDrift = (index: number, field: string) =>
  new RegExp(`^update talosnode:index:Rollout::${STACK}-rollout \\(.*nodes\\[${index}\\]\\.${field}.*\\)$`);
/** `npm run drift`'s line: its head and its items, sorted (the engine refreshes in parallel). */
const driftLine = (stdout: string) => {
  const [head = "", items = ""] = stdout.trim().split(/ resources?: /);
  return { head, items: items.split("; ").sort() };
};

describeEngine("live node state: talosnode.NodeState against simulated nodes", () => {
  let sim: Simulator;
  let ws: Workspace;
  let nodes: SimNodeConfig[];
  let config: Record<string, unknown>;
  let cp1: SimNodeConfig;
  let cp2: SimNodeConfig;
  let worker: SimNodeConfig;

  beforeAll(async () => {
    nodes = simNodes(NET, { controlPlanes: 3, workers: 1 });
    [cp1, cp2, , worker] = nodes as [SimNodeConfig, SimNodeConfig, SimNodeConfig, SimNodeConfig];
    sim = await Simulator.start(
      nodes.map((n) => n.address),
      FACTORY_PORT,
      CONTROL_PORT,
    );
    config = simStackConfig(sim, STACK, nodes, { "talos-cluster:nodeTimeout": NODE_TIMEOUT });
    ws = new Workspace(STACK, config);
    ws.must(["up", "--yes"]);
  });
  afterAll(() => {
    sim?.dispose();
    ws?.dispose();
  });

  it("records what every node runs, and a refresh of nodes as declared changes nothing", () => {
    const out = JSON.parse(ws.must(["stack", "output", "nodes", "--json"]).stdout) as Record<string, string>[];
    expect(out.map((n) => [n.name, n.runningTalosVersion, n.bootedSchematicId, n.kubernetesVersion])).toEqual(
      nodes.map((n) => [n.name, "v1.11.5", INTEL_UCODE_SCHEMATIC, "1.34.1"]),
    );
    ws.must(["preview", "--refresh", "--expect-no-changes"]);
    const r = runDrift(ws, "-s", STACK);
    expect(r.stdout.trim()).toBe(`${STACK}: no drift`);
    expect(r.code).toBe(0);
  });

  it("shows a node running another release as that node's update, naming the field and both values", async () => {
    await sim.set(cp1.address, { talosVersion: "v1.10.7" });
    const preview = ws.run(["preview", "--refresh", "--diff", "--expect-no-changes"]);
    expect(preview.code).not.toBe(0);
    expect(preview.output).toMatch(/talosVersion\s*:\s*"v1\.10\.7"\s*=>\s*"v1\.11\.5"/);
    const r = runDrift(ws, "-s", STACK);
    const line = driftLine(r.stdout);
    expect(line.head).toBe(`${STACK}: drift: 2`);
    expect(line.items[0]).toBe(`update ${stateOf(cp1)} (talosVersion)`);
    expect(line.items[1]).toMatch(rolloutDrift(0, "talosVersion"));
    expect(r.code).toBe(1);

    await sim.set(cp1.address, { talosVersion: "v1.11.5" });
    ws.must(["preview", "--refresh", "--expect-no-changes"]);
  });

  it("shows a node booted from another schematic the same way", async () => {
    await sim.set(worker.address, { schematic: OTHER_SCHEMATIC });
    const preview = ws.run(["preview", "--refresh", "--diff"]);
    expect(preview.output).toMatch(new RegExp(`schematicId\\s*:\\s*"${OTHER_SCHEMATIC}"\\s*=>\\s*"${INTEL_UCODE_SCHEMATIC}"`));
    const r = runDrift(ws, "-s", STACK);
    const line = driftLine(r.stdout);
    expect(line.head).toBe(`${STACK}: drift: 2`);
    expect(line.items[0]).toBe(`update ${stateOf(worker)} (schematicId)`);
    expect(line.items[1]).toMatch(rolloutDrift(nodes.indexOf(worker), "schematicId"));
    expect(r.code).toBe(1);

    await sim.set(worker.address, { schematic: INTEL_UCODE_SCHEMATIC });
    ws.must(["preview", "--refresh", "--expect-no-changes"]);
  });

  it("shows a config edited on a node by field and value, with no secret anywhere in the preview", async () => {
    await sim.set(cp2.address, { configPatch: "machine:\n  sysctls:\n    net.core.somaxconn: '4096'\n" });
    const preview = ws.run(["preview", "--refresh", "--diff"]);
    expect(preview.output).toContain("net.core.somaxconn");
    const r = runDrift(ws, "-s", STACK);
    const line = driftLine(r.stdout);
    expect(line.head).toBe(`${STACK}: drift: 2`);
    expect(line.items[0]).toMatch(new RegExp(`^update ${stateOf(cp2)} \\(.*configHash.*\\)$`));
    expect(line.items[1]).toMatch(rolloutDrift(nodes.indexOf(cp2), "machineConfiguration"));
    expect(r.code).toBe(1);

    const secrets = JSON.parse(ws.must(["stack", "output", "machineSecrets", "--show-secrets", "--json"]).stdout) as {
      secrets: Record<string, string>;
      certs: Record<string, { key?: string }>;
      cluster: { id: string; secret: string };
      trustdinfo: Record<string, string>;
    };
    const values = [
      ...Object.values(secrets.secrets),
      // cluster.id is an identifier Talos shows to readers (talosctl get info); cluster.secret is not.
      secrets.cluster.secret,
      ...Object.values(secrets.trustdinfo),
      ...Object.values(secrets.certs).flatMap((c) => (c.key ? [c.key, Buffer.from(c.key, "base64").toString("utf8")] : [])),
    ].filter((v) => typeof v === "string" && v.length >= 16);
    expect(values.length).toBeGreaterThan(5);
    for (const v of values) {
      const at = preview.output.indexOf(v);
      expect(at, `a machine secret in the preview output: ${preview.output.slice(Math.max(0, at - 300), at + 40)}`).toBe(-1);
    }

    // The generated config has no sysctls: deleting the section puts the node back as declared.
    await sim.set(cp2.address, { configPatch: "machine:\n  sysctls:\n    $patch: delete\n" });
    ws.must(["preview", "--refresh", "--expect-no-changes"]);
  });

  it("shows a cluster-wide patch change in the plain preview as that field changing in every node's config", () => {
    ws.writeConfig({ ...config, "talos-cluster:patches": { all: [{ machine: { sysctls: { "vm.max_map_count": "262144" } } }] } });
    const preview = ws.must(["preview", "--diff"]);
    for (const n of nodes) expect(preview.output).toContain(`${STACK}-${n.name}-state`);
    expect(preview.output.match(/vm\.max_map_count/g)?.length ?? 0).toBeGreaterThanOrEqual(nodes.length);
    ws.writeConfig(config);
  });

  it("fails the refresh naming a node that does not answer within nodeTimeout, and keeps it in the state", async () => {
    const before = ws.state().resources.filter((r) => r.type === TYPES.nodeState).length;
    await sim.stop(worker.address);
    const started = Date.now();
    const refresh = ws.run(["preview", "--refresh"]);
    expect(refresh.code).not.toBe(0);
    expect(refresh.output).toContain(`${STACK}-${worker.name}-state`);
    expect(refresh.output).toContain(worker.address);
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(ws.state().resources.filter((r) => r.type === TYPES.nodeState)).toHaveLength(before);

    await sim.start(worker.address);
    ws.must(["preview", "--refresh", "--expect-no-changes"]);
  });
});
