// An existing stack moves from the talos plugin's config apply to talosnode's: created as the
// release before the move did (test/fixtures/plugin-apply/cluster.ts, its nodes installed by the
// plugin's machine.ConfigurationApply), then brought up with today's program. The plugin's applies
// are deleted (a delete that makes no call to the machine), talosnode's adopt the running nodes,
// and no node is applied to or rebooted.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TYPES } from "../../lib/tokens";
import { SUITES } from "../addresses";
import {
  describeEngine,
  jsonStream,
  ROOT,
  type SimNode,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  Workspace,
} from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.migrateApply;

interface Step {
  op: string;
  urn: string;
}
const stepsOf = (stdout: string): Step[] =>
  jsonStream(stdout).flatMap((e) => {
    const ev = (e as { resOutputsEvent?: { metadata: Step } }).resOutputsEvent;
    return ev ? [{ op: ev.metadata.op, urn: ev.metadata.urn }] : [];
  });
// How a state export marks a secret value.
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const typeAndName = (urn: string) => urn.split("::").slice(-2).join("::").split("$").pop();

/**
 * A program folder of today's project whose components/cluster.ts is the one the release before
 * the move ran. Real copies, not links: Node resolves a linked file's imports from where it
 * really is, which would be today's components.
 */
function programBeforeTheMove(): string {
  const dir = mkdtempSync(join(tmpdir(), "talos-cluster-plugin-apply-"));
  for (const entry of ["index.ts", "Pulumi.yaml"]) copyFileSync(join(ROOT, entry), join(dir, entry));
  mkdirSync(join(dir, "components"));
  for (const f of readdirSync(join(ROOT, "components"))) copyFileSync(join(ROOT, "components", f), join(dir, "components", f));
  const frozen = readFileSync(join(ROOT, "test", "fixtures", "plugin-apply", "cluster.ts"), "utf8");
  writeFileSync(join(dir, "components", "cluster.ts"), frozen.replaceAll('from "../../../lib/', 'from "../lib/'));
  for (const entry of ["lib", "node_modules", "package.json", "tsconfig.json"]) symlinkSync(join(ROOT, entry), join(dir, entry));
  return dir;
}

describeEngine("an existing stack moves from the talos plugin's config apply to talosnode's", () => {
  let sim: Simulator;
  let ws: Workspace;
  let program: string;
  let nodes: SimNodeConfig[];
  let before: SimNode[];

  beforeAll(async () => {
    nodes = simNodes(NET, { controlPlanes: 1, workers: 1 });
    sim = await Simulator.start(
      nodes.map((n) => n.address),
      FACTORY_PORT,
      CONTROL_PORT,
    );
    program = programBeforeTheMove();
    ws = new Workspace(
      "migrate",
      simStackConfig(sim, "migrate", nodes, {
        "talos-cluster:nodeTimeout": "60s",
        "talos-cluster:upgrade": { kubernetesChecks: false },
      }),
      program,
    );
  });
  afterAll(() => {
    sim?.dispose();
    ws?.dispose();
    if (program !== undefined) rmSync(program, { recursive: true, force: true });
  });

  it("creates the stack as the release before the move did: one talos plugin apply per node", async () => {
    ws.must(["up", "--yes"]);
    const types = ws.state().resources.map((r) => r.type);
    expect(types.filter((t) => t === TYPES.pluginConfigApply)).toHaveLength(nodes.length);
    expect(types).not.toContain(TYPES.configApply);
    before = await sim.nodes();
    for (const n of before) expect([n.hostname, n.configured, n.applies]).toEqual([n.hostname, true, 1]);
  });

  it("moves with today's program: the plugin's applies and kubeconfig deleted, talosnode's adopting every node and minting the credentials, nothing else changed", async () => {
    copyFileSync(join(ROOT, "components", "cluster.ts"), join(program, "components", "cluster.ts"));
    const { result: up, events } = await sim.during(() => ws.must(["up", "--yes", "--json"]));

    const changed = stepsOf(up.stdout)
      .filter((s) => s.op !== "same")
      .map((s) => `${s.op} ${typeAndName(s.urn)}`)
      .sort();
    expect(changed).toEqual(
      [
        ...nodes.map((n) => `create ${TYPES.configApply}::migrate-${n.name}`),
        ...nodes.map((n) => `delete ${TYPES.pluginConfigApply}::migrate-${n.name}`),
        // The kubeconfig and talosconfig are minted from the machine secrets now: no node is asked.
        `create ${TYPES.credentials}::migrate-credentials`,
        `delete ${TYPES.pluginKubeconfig}::migrate-kubeconfig`,
      ].sort(),
    );
    for (const n of nodes) expect(up.stdout).toContain(`migrate-${n.name} (${n.address}) already answers over mutual TLS`);

    // No node was applied to, rebooted or otherwise touched.
    const after = await sim.nodes();
    expect(after.map((n) => [n.hostname, n.applies, n.bootId, n.config])).toEqual(before.map((n) => [n.hostname, 1, n.bootId, n.config]));
    expect(events).toEqual([]);

    const { resources, text } = ws.state();
    const applies = resources.filter((r) => r.type === TYPES.configApply);
    expect(applies.map((r) => r.outputs?.adopted)).toEqual(nodes.map(() => true));
    // The config and the client key are secrets in state, and the up printed neither.
    for (const r of applies) {
      for (const key of ["machineConfiguration", "clientConfiguration"])
        expect(JSON.stringify(r.outputs?.[key]), key).toContain(SECRET_SIG);
    }
    const shown = JSON.parse(ws.must(["stack", "output", "--json", "--show-secrets"]).stdout) as {
      machineSecrets: { secrets: { bootstrapToken: string }; certs: { os: { key: string } } };
    };
    // What the up shows: its events but the debug lines, which --json carries too and a `pulumi up`
    // without -v never prints (the Node.js SDK's "Invoke RPC finished" lines quote the talos
    // plugin's invoke results, machine secrets and all).
    const printed =
      JSON.stringify(
        jsonStream(up.stdout).filter((e) => (e as { diagnosticEvent?: { severity?: string } }).diagnosticEvent?.severity !== "debug"),
      ) + up.stderr;
    for (const secret of [shown.machineSecrets.secrets.bootstrapToken, shown.machineSecrets.certs.os.key]) {
      expect(secret.length).toBeGreaterThan(10);
      expect(text.includes(secret), "a machine secret in plain text in state").toBe(false);
      expect(printed.includes(secret), "a machine secret in the up's output").toBe(false);
    }
  });

  it("changes nothing on a second up", async () => {
    const up = ws.must(["up", "--yes", "--json"]);
    expect(stepsOf(up.stdout).filter((s) => s.op !== "same")).toEqual([]);
    ws.must(["preview", "--expect-no-changes"]);
    for (const n of await sim.nodes()) expect(n.applies).toBe(1);
  });
});
