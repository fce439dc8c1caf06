// End to end with the real CLI, engine, talos plugin and program, against simulated nodes and
// factory: 3 control planes behind a VIP and 2 workers (one tainted), addons off, config changes
// in no_reboot mode. Steps run in order on one stack.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TYPES } from "../../lib/tokens";
import { netPrefix, SUITES } from "../addresses";
import {
  describeEngine,
  jsonStream,
  runDrift,
  runSnapshot,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  Workspace,
} from "./workspace";

const INTEL_UCODE_SCHEMATIC = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.e2e;
const VIP = `${netPrefix(NET)}.100`;

interface Step {
  op: string;
  urn: string;
}
/** The resource steps of `pulumi up --json`, which prints a stream of engine events. */
const stepsOf = (stdout: string): Step[] =>
  jsonStream(stdout).flatMap((e) => {
    const ev = (e as { resOutputsEvent?: { metadata: Step } }).resOutputsEvent;
    return ev ? [{ op: ev.metadata.op, urn: ev.metadata.urn }] : [];
  });
const changed = (steps: Step[]) => steps.filter((s) => s.op !== "same");
const nameOf = (urn: string) => urn.split("::").pop();

describeEngine("end to end: pulumi up against simulated Talos nodes", () => {
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
    // worker-1 is a storage node: a pool label and a taint, as prod's storage workers have.
    nodes = nodes.map((n) =>
      n.name === "worker-1"
        ? { ...n, labels: { "node.kubernetes.io/pool": "storage" }, taints: [{ key: "dedicated", value: "storage", effect: "NoSchedule" }] }
        : n,
    );
    config = simStackConfig(sim, "sim", nodes, {
      "talos-cluster:nodeTimeout": "60s",
      "talos-cluster:applyMode": "no_reboot",
      // The simulated nodes have one link, enp1s0, as predictable naming gives a VM.
      "talos-cluster:endpoint": VIP,
      "talos-cluster:network": { nodeSubnet: `${netPrefix(NET)}.0/24`, vip: { address: VIP, interface: "enp1s0" } },
      // No API server runs here (the rollout test has one): the stack's opt-out, as for a cluster
      // whose :6443 the deploy machine cannot reach. Talos' own gates only; with the checks on,
      // the first in-place change would wait for a /readyz that never answers.
      "talos-cluster:upgrade": { kubernetesChecks: false },
    });
    ws = new Workspace("sim", config);
  });
  afterAll(() => {
    sim?.dispose();
    ws?.dispose();
  });

  it("creates the cluster: one configuration per node with the intel-ucode installer, one bootstrap", async () => {
    const up = ws.must(["up", "--yes", "--json"]);
    const created = changed(stepsOf(up.stdout));
    expect(created.every((s) => s.op === "create")).toBe(true);

    const state = await sim.nodes();
    for (const n of nodes) {
      const node = state.find((s) => s.address === n.address);
      expect(node, n.address).toMatchObject({ configured: true, applies: 1, role: n.role, hostname: n.name });
      expect(node?.installImage).toBe(`${new URL(sim.factoryUrl).host}/installer/${INTEL_UCODE_SCHEMATIC}:v1.11.5`);
    }
    const bootstrapped = state.filter((s) => s.bootstrapCalls > 0);
    expect(bootstrapped.map((s) => [s.address, s.bootstrapCalls])).toEqual([[nodes[0]?.address, 1]]);
  });

  it("installs every new node with auto, the only such mode maintenance mode takes, although the stack says no_reboot", async () => {
    for (const node of await sim.nodes()) expect(node.applyModes, node.hostname).toEqual(["AUTO"]);
  });

  it("brings the VIP up on exactly one control plane, on the link the stack names", async () => {
    const holders = (await sim.nodes()).filter((s) => s.vip?.up);
    expect(holders.map((s) => [s.role, s.vip?.address, s.vip?.link])).toEqual([["controlplane", VIP, "enp1s0"]]);
  });

  it("keeps every control plane's own DHCP address on the VIP's link, which a VIP-only entry would switch off", async () => {
    const state = await sim.nodes();
    expect(state.map((s) => [s.hostname, s.up, s.nodeAddress])).toEqual(
      nodes.map((n) => [n.name, true, { link: "enp1s0", source: "dhcp" }]),
    );
  });

  it("gives the tainted worker's Node both its taint and its label, and the other worker its plain Node", async () => {
    const state = await sim.nodes();
    const storage = state.find((s) => s.hostname === "worker-1")?.kubernetesNode;
    expect(storage?.error).toBe("");
    expect(storage?.labels).toMatchObject({ "node.kubernetes.io/pool": "storage" });
    expect(storage?.taints).toEqual([{ key: "dedicated", value: "storage", effect: "NoSchedule" }]);
    expect(state.find((s) => s.hostname === "worker-2")?.kubernetesNode?.taints).toEqual([]);
  });

  it("outputs the kubeconfig, talosconfig and machine secrets only as secrets, and stores none in plain text", () => {
    const plain = JSON.parse(ws.must(["stack", "output", "--json"]).stdout) as Record<string, unknown>;
    for (const key of ["kubeconfig", "talosconfig", "machineSecrets"]) expect(plain[key], key).toBe("[secret]");
    expect(plain.schematicId).toBe(INTEL_UCODE_SCHEMATIC);

    const shown = JSON.parse(ws.must(["stack", "output", "--json", "--show-secrets"]).stdout) as Record<string, unknown>;
    const kubeconfig = String(shown.kubeconfig);
    const talosconfig = String(shown.talosconfig);
    expect(kubeconfig).toContain("kind: Config");
    expect(talosconfig).toContain(`- ${nodes[0]?.address}`);
    // No default nodes: talosctl without -n must not reach every machine at once.
    expect(talosconfig).not.toMatch(/^\s*nodes:/m);
    const clientKey = /client-key-data: (\S+)/.exec(kubeconfig)?.[1];
    const talosKey = /key: (\S+)/.exec(talosconfig)?.[1];
    const bootstrapToken = (shown.machineSecrets as { secrets: { bootstrapToken: string } }).secrets.bootstrapToken;
    const { text } = ws.state();
    for (const [what, value] of [
      ["kubeconfig client key", clientKey],
      ["talosconfig key", talosKey],
      ["bootstrap token", bootstrapToken],
    ]) {
      expect(value, what).toBeTruthy();
      expect(text.includes(String(value)), `${what} in plain text in state`).toBe(false);
    }
  });

  it("lists when each credential ends, as plain dates: both client certificates a year out, the four CAs ten", () => {
    const credentials = JSON.parse(ws.must(["stack", "output", "credentials", "--json"]).stdout) as { name: string; daysLeft: number }[];
    expect(credentials.map((c) => [c.name, c.daysLeft >= 3649 ? "10y" : c.daysLeft >= 364 ? "1y" : String(c.daysLeft)])).toEqual([
      ["talosconfig client certificate", "1y"],
      ["kubeconfig client certificate", "1y"],
      ["Talos CA", "10y"],
      ["Kubernetes CA", "10y"],
      ["etcd CA", "10y"],
      ["aggregator CA", "10y"],
    ]);
  });

  it("takes a verified etcd snapshot outside a rollout: npm run snapshot, as os:etcd:backup alone, into the rollout's folder", async () => {
    const { result: r, events } = await sim.during(() => runSnapshot(ws, "sim"));
    expect(r.code, r.output).toBe(0);
    const cp = nodes[0];
    const files = readdirSync(ws.snapshotFolder());
    expect(files).toHaveLength(1);
    const path = join(ws.snapshotFolder(), files[0] ?? "");
    expect(files[0]).toMatch(/^sim-cp-1-\d{8}T\d{6}\.\d{3}Z\.db$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(r.stdout.trim()).toBe(
      `sim: etcd snapshot of cp-1 (${cp?.address}), verified: ${path} (${statSync(path).size} bytes, revision ${/revision (\d+)/.exec(r.stdout)?.[1]})`,
    );
    expect(Number(/revision (\d+)/.exec(r.stdout)?.[1])).toBeGreaterThan(1);
    expect(events.filter((e) => e.event === "snapshot").map((e) => [e.node, e.detail.replace(/^\d+ bytes/, "N bytes")])).toEqual([
      [cp?.address, "N bytes, by os:etcd:backup"],
    ]);
  });

  it("changes nothing on a second up, and preview --expect-no-changes passes", async () => {
    const up = ws.must(["up", "--yes", "--json"]);
    expect(changed(stepsOf(up.stdout))).toEqual([]);
    ws.must(["preview", "--expect-no-changes"]);
    for (const node of await sim.nodes()) expect(node.applies).toBe(1);
  });

  it("finds no drift in the stack or on any node: npm run drift", () => {
    const r = runDrift(ws, "-s", "sim");
    expect(r.stdout.trim()).toBe("sim: no drift");
    expect(r.code).toBe(0);
  });

  it("applies a changed node patch to that node alone, through the rollout, replacing nothing", async () => {
    const edited = nodes.map((n) =>
      n.name === "worker-2" ? { ...n, patches: [{ machine: { sysctls: { "vm.max_map_count": "262144" } } }] } : n,
    );
    config = { ...config, "talos-cluster:nodes": edited };
    ws.writeConfig(config);
    const up = ws.must(["up", "--yes", "--json"]);
    // The rollout applies it (its config apply only installs); the node's state reads it back.
    expect(changed(stepsOf(up.stdout)).map((s) => [s.op, nameOf(s.urn)])).toEqual([
      ["update", "sim-rollout"],
      ["update", "sim-worker-2-state"],
    ]);
    const state = await sim.nodes();
    expect(state.map((s) => [s.hostname, s.applies])).toEqual(nodes.map((n) => [n.name, n.name === "worker-2" ? 2 : 1]));
    // The install used auto; the change on the running node uses the stack's no_reboot.
    expect(state.find((s) => s.hostname === "worker-2")?.applyModes).toEqual(["AUTO", "NO_REBOOT"]);
    expect(state.find((s) => s.hostname === "worker-2")?.config).toContain('vm.max_map_count: "262144"');
    // kubernetesChecks: false reaches the Rollout: nothing waited for in Kubernetes.
    const rollout = ws.state().resources.find((r) => r.type === TYPES.rollout);
    expect(rollout?.outputs?.kubernetesChecks).toBe(false);
    ws.must(["preview", "--expect-no-changes"]);
  });

  it("reports a VIP on a link the nodes lack, which Talos ignores without an error, and brings it back on the right one", async () => {
    const network = config["talos-cluster:network"] as Record<string, unknown>;
    ws.writeConfig({ ...config, "talos-cluster:network": { ...network, vip: { address: VIP, interface: "eth0" } } });
    ws.must(["up", "--yes"]);
    expect((await sim.nodes()).filter((s) => s.vip?.up)).toEqual([]);
    const preview = ws.run(["preview", "--refresh", "--diff"]);
    expect(preview.output).toContain(`vip: "${VIP} (no link matches interface \\"eth0\\"; links: enp1s0)" => "${VIP}"`);
    const r = runDrift(ws, "-s", "sim");
    const [head, items = ""] = r.stdout.trim().split(" resources: ");
    expect(head).toBe("sim: drift: 3");
    const controlPlanes = nodes.filter((n) => n.role === "controlplane");
    expect(items.split("; ").sort()).toEqual(
      controlPlanes.map((n) => `update talosnode:index:NodeState::sim-${n.name}-state (vip)`).sort(),
    );
    expect(r.code).toBe(1);

    ws.writeConfig(config);
    ws.must(["up", "--yes"]);
    expect((await sim.nodes()).filter((s) => s.vip?.up).map((s) => s.vip?.link)).toEqual(["enp1s0"]);
  });

  it("upgrades every node to a new schematic's installer when an extension is added, replacing only the schematic", async () => {
    config = { ...config, "talos-cluster:extensions": ["siderolabs/iscsi-tools"] };
    ws.writeConfig(config);
    const up = ws.must(["up", "--yes", "--json"]);
    const ops = changed(stepsOf(up.stdout)).map((s) => [s.op, nameOf(s.urn)]);
    expect(ops.filter(([op]) => op !== "update")).toEqual(
      expect.arrayContaining([
        ["create-replacement", "sim-schematic"],
        ["replace", "sim-schematic"],
        ["delete-replaced", "sim-schematic"],
      ]),
    );
    expect(ops.filter(([op]) => op === "update").map(([, n]) => n)).toEqual(
      expect.arrayContaining(["sim-rollout", ...nodes.map((n) => `sim-${n.name}-state`)]),
    );
    const id = JSON.parse(ws.must(["stack", "output", "schematicId", "--json"]).stdout) as string;
    expect(id).not.toBe(INTEL_UCODE_SCHEMATIC);
    for (const node of await sim.nodes()) {
      expect(node.installImage).toBe(`${new URL(sim.factoryUrl).host}/installer/${id}:v1.11.5`);
      expect(node.schematic, node.hostname).toBe(id);
    }
    ws.must(["preview", "--expect-no-changes"]);
  });

  it("never bootstraps again when another control plane becomes the first in the list", async () => {
    const current = config["talos-cluster:nodes"] as SimNodeConfig[];
    const reordered = [current[1], current[0], ...current.slice(2)];
    config = { ...config, "talos-cluster:nodes": reordered };
    ws.writeConfig(config);
    const up = ws.must(["up", "--yes", "--json"]);
    expect(changed(stepsOf(up.stdout)).map((s) => nameOf(s.urn))).not.toContain("sim-bootstrap");
    const calls = (await sim.nodes()).map((n) => [n.hostname, n.bootstrapCalls]).filter(([, c]) => c !== 0);
    expect(calls).toEqual([["cp-1", 1]]);
  });

  it("keeps the protected machine secrets on destroy and says why", () => {
    const destroy = ws.run(["destroy", "--yes"]);
    console.log(destroy.output.split("\n").find((l) => l.includes("protected")));
    expect(destroy.code).not.toBe(0);
    expect(destroy.output).toMatch(/sim-secrets.*protected|protected.*sim-secrets/s);
    const left = ws.state().resources.filter((r) => r.type === TYPES.secrets);
    expect(left).toHaveLength(1);
    expect(left[0]?.protect).toBe(true);
  });
});
