// Disaster recovery as a stack change, on three simulated control planes with the real etcd and
// kube-apiserver: a ConfigMap is created, `npm run snapshot` takes a verified snapshot through the
// Talos API, every control plane is wiped with the real talosctl (EPHEMERAL, as Talos' recovery
// guide says), and the stack's `recover.snapshot` brings etcd back: the ConfigMap is there again
// through kubectl with the stack's kubeconfig, a second up changes nothing, and removing the key
// touches no machine.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import {
  BIN,
  controlPlaneFlags,
  describeEngine,
  runSnapshot,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  Workspace,
} from "./workspace";

const STACK = "recover";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.recover;

describeEngine(
  "etcd recovered from a snapshot through the stack's recover.snapshot",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    let nodes: SimNodeConfig[];
    let config: Record<string, unknown>;
    let dir: string;
    let snapshot: string;
    const file = (name: string, text: string) => {
      const path = join(dir, name);
      writeFileSync(path, text, { mode: 0o600 });
      return path;
    };
    const kubectl = (...args: string[]) => {
      const kubeconfig = file("kubeconfig", ws.must(["stack", "output", "kubeconfig", "--show-secrets"]).stdout);
      return spawnSync(join(BIN, "kubectl"), ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8", timeout: 60_000 });
    };
    const talosctl = (node: SimNodeConfig, ...args: string[]) => {
      const talosconfig = file("talosconfig", ws.must(["stack", "output", "talosconfig", "--show-secrets"]).stdout);
      const r = spawnSync(join(BIN, "talosctl"), ["--talosconfig", talosconfig, "-e", node.address, "-n", node.address, ...args], {
        encoding: "utf8",
        timeout: 120_000,
      });
      if (r.status !== 0) throw new Error(`talosctl ${args.join(" ")} on ${node.name}: ${r.error?.message ?? ""}${r.stderr}`);
      return r.stdout;
    };
    const until = async (what: string, done: () => Promise<boolean> | boolean) => {
      const deadline = Date.now() + 60_000;
      while (!(await done())) {
        if (Date.now() > deadline) throw new Error(`${what}: not within a minute`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "recover-"));
      nodes = simNodes(NET, { controlPlanes: 3, workers: 0 });
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        // Long enough that no wiped control plane is back before the last is wiped: one back
        // earlier would rejoin the members still running, and etcd would never be lost.
        ["-reboot-time", "6s", ...controlPlaneFlags()],
      );
      config = simStackConfig(sim, STACK, nodes, { "talos-cluster:nodeTimeout": "30s" });
      ws = new Workspace(STACK, config);
      ws.must(["up", "--yes", "--skip-preview"]);
      await until("the API server answers", () => kubectl("get", "namespaces").status === 0);
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("takes a snapshot holding a ConfigMap, then loses etcd on every control plane", async () => {
      expect(kubectl("create", "configmap", "keep-me", "--from-literal=answer=42").status).toBe(0);
      const r = runSnapshot(ws, STACK);
      expect(r.code, r.output).toBe(0);
      const [name] = readdirSync(ws.snapshotFolder());
      expect(name).toBeDefined();
      snapshot = join(ws.snapshotFolder(), String(name));
      expect(kubectl("create", "configmap", "after-the-snapshot", "--from-literal=lost=yes").status).toBe(0);

      // Talos' recovery guide: wipe EPHEMERAL without leaving etcd (a graceful reset would leave).
      for (const n of nodes) talosctl(n, "reset", "--graceful=false", "--reboot", "--wait=false", "--system-labels-to-wipe", "EPHEMERAL");
      await until("etcd lost on the cluster", async () => (await sim.timeline()).some((e) => e.event === "etcd-lost"));
      await until("every control plane back up", async () => (await sim.nodes()).every((n) => n.up));
      expect(kubectl("get", "configmap", "keep-me").status).not.toBe(0);
    });

    it("previews the recovery with the snapshot's revision and hash, recovers on up, and the ConfigMap is back", async () => {
      config = { ...config, "talos-cluster:recover": { snapshot } };
      ws.writeConfig(config);
      const preview = ws.must(["preview"]);
      expect(preview.output).toMatch(/recovers etcd from .*: revision \d+, \d+ keys/);

      const { result: up, events } = await sim.during(() => ws.run(["up", "--yes", "--skip-preview"]));
      expect(up.code, up.output).toBe(0);
      expect(events.some((e) => e.event === "etcd-recover")).toBe(true);
      // The API server starts on the restored etcd a few seconds after the bootstrap (addons, off
      // here, would wait for it).
      await until("the API server answers", () => kubectl("get", "namespaces").status === 0);
      const got = kubectl("get", "configmap", "keep-me", "-o", "jsonpath={.data.answer}");
      expect(got.stdout, got.stderr).toBe("42");
      // Made after the snapshot: gone, as etcd is at the snapshot's revision.
      expect(kubectl("get", "configmap", "after-the-snapshot").status).not.toBe(0);
      await until("every member promoted", async () =>
        (await sim.etcdMembers()).flatMap((c) => c.members).every((m) => !m.learner && m.name !== ""),
      );
    });

    it("changes nothing on a second up, and dropping the key touches no machine", async () => {
      const again = await sim.during(() => ws.must(["up", "--yes", "--skip-preview"]));
      expect(again.events.filter((e) => !e.event.startsWith("etcd-leader"))).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);

      const { "talos-cluster:recover": _, ...withoutKey } = config;
      config = withoutKey;
      ws.writeConfig(config);
      const dropped = await sim.during(() => ws.must(["up", "--yes", "--skip-preview"]));
      expect(dropped.events.filter((e) => !e.event.startsWith("etcd-leader"))).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });
  },
  { controlPlane: true },
);
