// Rolling changes of a running cluster from `pulumi up`: a new Talos release, a new schematic, a
// Kubernetes version and a patch that needs a reboot reach the nodes one at a time, control
// planes first behind etcd gates with a snapshot each, then workers in batches. The simulator's
// timeline says when each node was down; the tests read the order and overlaps from it. The
// simulator runs a real etcd and kube-apiserver, so the rollout's checks through Kubernetes (on by
// default) run as on a real cluster: in-place changes awaited, reboot-class applies drained.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { netPrefix, SUITES } from "../addresses";
import {
  controlPlaneFlags,
  describeEngine,
  downtimes,
  mostDownAtOnce,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  type TimelineEvent,
  Workspace,
} from "./workspace";

const STACK = "roll";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.rollout;
/** A node's address on this suite's net, escaped for a RegExp (the net moves with TALOS_TEST_ADDRESS_BASE). */
const at = (host: number) => `${netPrefix(NET)}.${host}`.replaceAll(".", "\\.");

describeEngine(
  "rolling upgrades and config changes against simulated nodes",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    let nodes: SimNodeConfig[];
    let controlPlanes: string[];
    let workers: string[];
    let config: Record<string, unknown>;
    const names = new Map<string, string>();

    /** Writes the stack config with `changes` over the current one, and keeps it for the next test. */
    const change = (changes: Record<string, unknown>) => {
      config = { ...config, ...changes };
      ws.writeConfig(config);
    };
    /** Runs `up` and returns the timeline entries it produced. */
    const upAndTimeline = async (expectFailure = false) => {
      const { result: r, events } = await sim.during(() => ws.run(["up", "--yes", "--skip-preview"]));
      if (!expectFailure && r.code !== 0) throw new Error(`up failed:\n${r.output}`);
      if (expectFailure && r.code === 0) throw new Error(`up succeeded, a failure was expected:\n${r.output}`);
      return { events, output: r.output };
    };
    const of = (events: TimelineEvent[], kind: TimelineEvent["event"]) => events.filter((e) => e.event === kind).map((e) => e.node);
    const named = (addresses: string[]) => addresses.map((a) => names.get(a) ?? a);

    /** The rules every rollout keeps, read from the timeline. */
    const expectRolling = (events: TimelineEvent[], maxWorkers: number) => {
      const downs = downtimes(events);
      for (const d of downs) expect(d.to, `${names.get(d.node)} came back`).toBeLessThan(Number.POSITIVE_INFINITY);
      // A control plane is down alone: no other control plane, no worker.
      for (const d of downs.filter((x) => controlPlanes.includes(x.node))) {
        const overlapping = downs.filter((o) => o !== d && o.from < d.to && d.from < o.to);
        expect(named(overlapping.map((o) => o.node)), `down together with ${names.get(d.node)}`).toEqual([]);
      }
      expect(mostDownAtOnce(downs, (n) => workers.includes(n))).toBeLessThanOrEqual(maxWorkers);
      // Control planes in the stack's order, before any worker.
      const order = named(downs.map((d) => d.node));
      const firstWorker = order.findIndex((n) => n.startsWith("worker"));
      expect(order.slice(0, firstWorker === -1 ? undefined : firstWorker)).toEqual(named(controlPlanes).filter((n) => order.includes(n)));
      if (firstWorker !== -1) expect(order.slice(firstWorker).every((n) => n.startsWith("worker"))).toBe(true);
      return downs;
    };

    const snapshotFolder = () => ws.snapshotFolder();
    const snapshotFiles = () => readdirSync(snapshotFolder()).filter((f) => f.endsWith(".db"));

    beforeAll(async () => {
      nodes = simNodes(NET, { controlPlanes: 3, workers: 4 });
      controlPlanes = nodes.filter((n) => n.role === "controlplane").map((n) => n.address);
      workers = nodes.filter((n) => n.role === "worker").map((n) => n.address);
      for (const n of nodes) names.set(n.address, n.name);
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        ["-reboot-time", "1s", "-factory-versions", "v1.11.5,v1.11.6,v1.11.7", ...controlPlaneFlags()],
      );
      config = simStackConfig(sim, STACK, nodes, {
        "talos-cluster:nodeTimeout": "30s",
        "talos-cluster:upgrade": { healthTimeout: "30s" },
      });
      ws = new Workspace(STACK, config);
      const first = await upAndTimeline();
      // A new cluster installs every node at once and reboots none of them through the rollout.
      expect(of(first.events, "upgrade")).toEqual([]);
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("upgrades every node to a new Talos release in one up, one control plane at a time with a verified snapshot first, then the workers one by one", async () => {
      change({ "talos-cluster:talosVersion": "v1.11.6" });
      const { events } = await upAndTimeline();
      expect(named(of(events, "upgrade"))).toEqual(nodes.map((n) => n.name));
      expectRolling(events, 1);
      // Each control plane's snapshot was taken before its upgrade call, from that node.
      for (const cp of controlPlanes) {
        const snap = events.findIndex((e) => e.event === "snapshot" && e.node === cp);
        const upgrade = events.findIndex((e) => e.event === "upgrade" && e.node === cp);
        expect(snap, `snapshot of ${names.get(cp)}`).toBeGreaterThanOrEqual(0);
        expect(snap).toBeLessThan(upgrade);
      }
      // In the user's state folder (the workspace's XDG_STATE_HOME), not in the project's folder
      // that a CI checkout cleans; readable by the user alone: they hold every secret in etcd.
      expect(existsSync(join(ws.dir, ".snapshots"))).toBe(false);
      expect(statSync(snapshotFolder()).mode & 0o777).toBe(0o700);
      const files = snapshotFiles();
      expect(files.map((f) => f.replace(/-\d{8}T[\d.]+Z\.db$/, "")).sort()).toEqual(["roll-cp-1", "roll-cp-2", "roll-cp-3"]);
      for (const f of files) {
        const path = join(snapshotFolder(), f);
        expect(statSync(path).mode & 0o777, f).toBe(0o600);
        // As talosctl checks one: a bbolt database of whole pages, then the database's sha256.
        const data = readFileSync(path);
        expect(data.length % 512, f).toBe(32);
        const sum = createHash("sha256")
          .update(data.subarray(0, data.length - 32))
          .digest();
        expect(sum.equals(data.subarray(data.length - 32)), `${f}: sha256 trailer`).toBe(true);
      }
      for (const n of await sim.nodes()) expect([names.get(n.address), n.talosVersion]).toEqual([names.get(n.address), "v1.11.6"]);
      const out = JSON.parse(ws.must(["stack", "output", "nodes", "--json"]).stdout) as { runningTalosVersion: string }[];
      expect(out.map((n) => n.runningTalosVersion)).toEqual(nodes.map(() => "v1.11.6"));

      const again = await upAndTimeline();
      expect(again.events).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });

    it("moves every node to the schematic with a new extension, in the same order", async () => {
      change({ "talos-cluster:extensions": ["siderolabs/iscsi-tools"] });
      const { events } = await upAndTimeline();
      expect(named(of(events, "upgrade"))).toEqual(nodes.map((n) => n.name));
      expectRolling(events, 1);
      const schematic = JSON.parse(ws.must(["stack", "output", "schematicId", "--json"]).stdout) as string;
      for (const n of await sim.nodes()) expect([names.get(n.address), n.schematic]).toEqual([names.get(n.address), schematic]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });

    it("changes the Kubernetes version component by component, as upgrade-k8s does, without a reboot, each step landing before the next", async () => {
      change({ "talos-cluster:kubernetesVersion": "1.34.2" });
      const { events, output } = await upAndTimeline();
      const applies = named(of(events, "apply"));
      // kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy on each control plane
      // first, then every kubelet: control planes, then workers (one at a time here).
      const cpNames = named(controlPlanes);
      expect(applies.slice(0, 4 * cpNames.length).every((n) => cpNames.includes(n))).toBe(true);
      expect(applies.slice(4 * cpNames.length)).toEqual(nodes.map((n) => n.name));
      expect(of(events, "down")).toEqual([]);
      for (const n of await sim.nodes()) expect(n.config).toContain("kubelet:v1.34.2");
      // Each kubelet was awaited through the API server (the Node at the new version and Ready).
      // (The CLI prints each line while it runs and again in its summary: the first of each counts.)
      const kubelets = new Set([...output.matchAll(/([\w-]+) \([\d.:]+\): kubelet 1\.34\.2 runs/g)].map((m) => m[1]));
      expect([...kubelets]).toEqual(nodes.map((n) => n.name));
      expect(output).toMatch(/kube-apiserver 1\.34\.1 -> 1\.34\.2: applied in place/);
    });

    it("reboots nodes one at a time for a cluster-wide patch Talos cannot apply in place, each cordoned and drained first, uncordoned after", async () => {
      change({ "talos-cluster:patches": { all: [{ machine: { env: { HTTPS_PROXY: "http://proxy.example:3128" } } }] } });
      const before = new Map((await sim.nodes()).map((n) => [n.address, n.kubeAtApply?.length ?? 0]));
      const { events, output } = await upAndTimeline();
      const downs = expectRolling(events, 1);
      expect(named(downs.map((d) => d.node))).toEqual(nodes.map((n) => n.name));
      for (const n of await sim.nodes()) {
        expect(n.config).toContain("HTTPS_PROXY");
        // What the API server showed when the apply reached the node: its Node cordoned, nothing left on it.
        const atApply = (n.kubeAtApply ?? []).slice(before.get(n.address) ?? 0);
        expect([names.get(n.address), atApply]).toEqual([names.get(n.address), [{ mode: "REBOOT", unschedulable: true, pods: [] }]]);
      }
      for (const n of nodes) {
        expect(output).toMatch(new RegExp(`${n.name} \\([\\d.:]+\\): the config change reboots the node: Node ${n.name} cordoned`));
        expect(output).toMatch(new RegExp(`${n.name} \\([\\d.:]+\\): Node ${n.name} uncordoned`));
      }
    });

    it("takes workers two at a time, never three, with maxUnavailableWorkers: 2", async () => {
      change({ "talos-cluster:extensions": [], "talos-cluster:upgrade": { healthTimeout: "30s", maxUnavailableWorkers: 2 } });
      const { events } = await upAndTimeline();
      const downs = expectRolling(events, 2);
      expect(mostDownAtOnce(downs, (n) => workers.includes(n))).toBe(2);
      expect(named(of(events, "upgrade")).sort()).toEqual(nodes.map((n) => n.name).sort());
    });

    it("stops at a control plane whose new image does not boot, touching nothing after it; a rerun finishes without upgrading the first again", async () => {
      const [cp1, cp2, cp3] = controlPlanes as [string, string, string];
      await sim.fault(cp2, { bootFails: true });
      change({ "talos-cluster:talosVersion": "v1.11.7", "talos-cluster:upgrade": { healthTimeout: "30s" } });
      const failed = await upAndTimeline(true);
      expect(failed.output).toMatch(new RegExp(`cp-2 \\(${at(12)}\\): post-check: expected v1\\.11\\.7 .*seen v1\\.11\\.6 .*rolled back`));
      expect(named(of(failed.events, "upgrade"))).toEqual(["cp-1", "cp-2"]);
      expect(of(failed.events, "down").filter((n) => n !== cp1 && n !== cp2)).toEqual([]);
      expect((await sim.node(cp2)).talosVersion).toBe("v1.11.6");
      expect((await sim.node(cp3)).talosVersion).toBe("v1.11.6");

      await sim.fault(cp2, { bootFails: false });
      const rerun = await upAndTimeline();
      expect(named(of(rerun.events, "upgrade"))).toEqual(nodes.map((n) => n.name).filter((n) => n !== "cp-1"));
      expectRolling(rerun.events, 1);
      for (const n of await sim.nodes()) expect(n.talosVersion).toBe("v1.11.7");
    });

    it("refuses to start while an etcd member is unhealthy: no upgrade call is made", async () => {
      const cp3 = controlPlanes[2] as string;
      await sim.etcd(cp3, { healthy: false });
      change({ "talos-cluster:talosVersion": "v1.11.6", "talos-cluster:upgrade": { healthTimeout: "10s" } });
      const failed = await upAndTimeline(true);
      expect(failed.output).toMatch(new RegExp(`cp-1 \\(${at(11)}\\): pre-check: expected all 3 etcd members listed, started and healthy`));
      expect(failed.output).toContain("cp-3");
      expect(of(failed.events, "upgrade")).toEqual([]);
      expect(of(failed.events, "down")).toEqual([]);

      await sim.etcd(cp3, { healthy: true });
      change({ "talos-cluster:upgrade": { healthTimeout: "30s" } });
      const rerun = await upAndTimeline();
      expect(named(of(rerun.events, "upgrade"))).toEqual(nodes.map((n) => n.name));
    });

    it("resumes after a node stopped mid-rollout and converges", async () => {
      const [, , w3] = workers as [string, string, string, string];
      change({ "talos-cluster:talosVersion": "v1.11.7", "talos-cluster:upgrade": { healthTimeout: "8s" } });
      const mark = (await sim.timeline()).length;
      const running = ws.runAsync(["up", "--yes", "--skip-preview"]);
      // Stop the third worker once the first worker is on its way.
      for (let i = 0; i < 600; i++) {
        const seen = (await sim.timeline()).slice(mark);
        if (seen.some((e) => e.event === "upgrade" && e.node === workers[0])) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await sim.stop(w3);
      const failed = await running;
      expect(failed.code).not.toBe(0);
      expect(failed.output).toMatch(new RegExp(`worker-3 \\(${at(23)}\\): pre-check`));
      const done = of((await sim.timeline()).slice(mark), "upgrade");

      await sim.start(w3);
      change({ "talos-cluster:upgrade": { healthTimeout: "30s" } });
      const rerun = await upAndTimeline();
      const again = of(rerun.events, "upgrade");
      expect(again.filter((n) => done.includes(n))).toEqual([]);
      expect(named([...done, ...again]).sort()).toEqual(nodes.map((n) => n.name).sort());
      for (const n of await sim.nodes()) expect(n.talosVersion).toBe("v1.11.7");
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });
  },
  { controlPlane: true },
);
