// `pulumi up --refresh` corrects what `preview --refresh` shows: a node upgraded and another
// re-configured behind the stack's back with the real talosctl (a client nobody here wrote) are
// brought back to the declared release and config by the Rollout, through its gates, and the next
// up changes nothing. Nodes, factory and control: SUITES.refresh (test/addresses.ts).
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import { controlPlaneFlags, describeEngine, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.refresh;

const STACK = "fix";
const ROOT = join(__dirname, "..", "..");
const TALOSCTL = process.env.TALOSCTL ?? join(ROOT, "node_modules", ".bin", "talosctl");
const INTEL_UCODE_SCHEMATIC = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8";

describeEngine(
  "up --refresh puts back nodes changed with talosctl",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    let cp: SimNodeConfig;
    let worker: SimNodeConfig;
    let talosconfig: string;
    const talosctl = (node: SimNodeConfig, ...args: string[]) => {
      const r = spawnSync(TALOSCTL, ["--talosconfig", talosconfig, "-e", node.address, "-n", node.address, ...args], {
        encoding: "utf8",
        timeout: 180_000,
      });
      if (r.status !== 0) throw new Error(`talosctl ${args.join(" ")}: ${r.error?.message ?? ""}${r.stderr}`);
      return r.stdout;
    };

    beforeAll(async () => {
      const nodes = simNodes(NET, { controlPlanes: 1, workers: 1 });
      [cp, worker] = nodes as [SimNodeConfig, SimNodeConfig];
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        ["-reboot-time", "1s", "-factory-versions", "v1.11.5,v1.11.6", ...controlPlaneFlags()],
      );
      ws = new Workspace(STACK, simStackConfig(sim, STACK, nodes));
      ws.must(["up", "--yes"]);
      talosconfig = join(mkdtempSync(join(tmpdir(), "fix-")), "talosconfig");
      writeFileSync(talosconfig, ws.must(["stack", "output", "talosconfig", "--show-secrets"]).stdout, { mode: 0o600 });
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("brings the upgraded worker and the edited control plane back, then changes nothing", async () => {
      const factoryHost = new URL(sim.factoryUrl).host;
      talosctl(worker, "upgrade", "-i", `${factoryHost}/installer/${INTEL_UCODE_SCHEMATIC}:v1.11.6`, "--wait", "--timeout", "2m");
      talosctl(cp, "patch", "machineconfig", "--mode", "no-reboot", "-p", '{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}');
      expect((await sim.node(worker.address)).talosVersion).toBe("v1.11.6");
      expect((await sim.node(cp.address)).config).toContain("vm.max_map_count");

      // The preview names both; the up without refresh would leave them (its state is as declared).
      const preview = ws.run(["preview", "--refresh", "--diff"]);
      expect(preview.output).toMatch(/nodes\[1\]\.talosVersion|talosVersion\s*:\s*"v1\.11\.6"/);
      ws.must(["up", "--refresh", "--yes"]);
      expect((await sim.node(worker.address)).talosVersion).toBe("v1.11.5");
      expect((await sim.node(cp.address)).config).not.toContain("vm.max_map_count");
      const timeline = await sim.timeline();
      expect(timeline.some((e) => e.node === cp.address && e.event === "snapshot")).toBe(true);

      ws.must(["preview", "--refresh", "--expect-no-changes"]);
      ws.must(["up", "--yes", "--expect-no-changes"]);
    });
  },
  { controlPlane: true },
);
