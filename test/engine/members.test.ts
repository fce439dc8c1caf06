// Machines that come and go, each by a one-line change of `nodes`, on a 3+3 cluster of simulated
// machines with a real etcd and kube-apiserver: a worker added, a control plane added together with
// a worker config change, a worker removed (drained, reset into maintenance, its Node deleted), a
// control plane removed (etcd's member list then the declared control planes, and the next Talos
// upgrade rolls through its gates), a stopped control plane replaced by a machine at a new address,
// and the changes the Rollout refuses at preview. Every step ends with a second up that changes
// nothing and a clean `preview --refresh`.
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import {
  controlPlaneFlags,
  describeEngine,
  kubeGet,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  type TimelineEvent,
  Workspace,
} from "./workspace";

const STACK = "members";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.members;

describeEngine(
  "machines added, removed and replaced through the stack's nodes",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    // cp-1..cp-4 and worker-1..worker-4 on .11-.14 and .21-.24; the stack starts with three of each.
    let machines: SimNodeConfig[];
    let declared: SimNodeConfig[];
    let config: Record<string, unknown>;
    const names = new Map<string, string>();
    // A spare machine for cp-3 to move to.
    const spare = (): SimNodeConfig => ({ ...byName("cp-3"), address: `${byName("cp-3").address.replace(/\.\d+$/, "")}.15` });
    const byName = (name: string): SimNodeConfig => {
      const m = machines.find((n) => n.name === name);
      if (m === undefined) throw new Error(`no machine ${name}`);
      return m;
    };

    const declare = (nodes: SimNodeConfig[], extra: Record<string, unknown> = {}) => {
      declared = nodes;
      config = { ...config, "talos-cluster:nodes": nodes, ...extra };
      ws.writeConfig(config);
    };
    const up = async () => {
      const { result, events } = await sim.during(() => ws.run(["up", "--yes", "--skip-preview"]));
      if (result.code !== 0) throw new Error(`up failed:\n${result.output}`);
      return { events, output: result.output };
    };
    /** A second up makes no call that changes a machine, and a refreshing preview finds nothing. */
    const settled = async () => {
      const again = await up();
      // Observations, not calls: etcd's elections, and a reset machine's Node turning NotReady
      // once the simulated node monitor's grace period has passed.
      expect(again.events.filter((e) => !e.event.startsWith("etcd-leader") && e.event !== "node-not-ready")).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    };
    const named = (events: TimelineEvent[], kind: TimelineEvent["event"]) =>
      events.filter((e) => e.event === kind).map((e) => names.get(e.node) ?? e.node);
    const touched = (events: TimelineEvent[]) =>
      [...new Set(events.filter((e) => !e.event.startsWith("etcd-leader")).map((e) => names.get(e.node) ?? e.node))].sort();
    /** etcd's members as the simulator's cluster lists them: names, learners marked. */
    const members = async () =>
      (await sim.etcdMembers())
        .filter((c) => c.cluster.startsWith(`${STACK}/`))
        .flatMap((c) => c.members)
        .map((m) => (m.learner ? `${m.name} (learner)` : m.name || `(unstarted ${m.address})`))
        .sort();
    /** A reset machine reboots on its own: awaited back (in maintenance) so its boot is not the next up's. */
    const backInMaintenance = async (name: string) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const m = await sim.node(byName(name).address);
        if (m.up && !m.configured) return;
        if (Date.now() > deadline)
          throw new Error(`${name} not back in maintenance mode: ${JSON.stringify({ up: m.up, configured: m.configured })}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const kubeconfig = () => JSON.parse(ws.must(["stack", "output", "kubeconfig", "--show-secrets", "--json"]).stdout) as string;
    /** The Nodes the API server lists; it starts a few seconds after the bootstrap, so it is awaited. */
    const kubeNodes = async () => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          const r = await kubeGet(kubeconfig(), "/api/v1/nodes");
          return ((r.body.items ?? []) as { metadata: { name: string } }[]).map((n) => n.metadata.name).sort();
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    const controlPlaneNames = () =>
      declared
        .filter((n) => n.role === "controlplane")
        .map((n) => n.name)
        .sort();

    beforeAll(async () => {
      machines = simNodes(NET, { controlPlanes: 4, workers: 4 });
      const all = [...machines, spare()];
      for (const m of machines) names.set(m.address, m.name);
      names.set(spare().address, "cp-3 (new machine)");
      sim = await Simulator.start(
        all.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        [
          "-reboot-time",
          "1s",
          "-factory-versions",
          "v1.11.5,v1.11.6",
          "-etcd-promote-time",
          "2s",
          "-node-monitor-grace",
          "3s",
          ...controlPlaneFlags(),
        ],
      );
      const initial = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"].map(byName);
      config = simStackConfig(sim, STACK, initial, {
        "talos-cluster:nodeTimeout": "30s",
        "talos-cluster:upgrade": { healthTimeout: "45s", drainTimeout: "30s" },
      });
      declared = initial;
      ws = new Workspace(STACK, config);
      await up();
      // A new cluster's later control planes join as learners; etcd promotes them on its own.
      const deadline = Date.now() + 30_000;
      while ((await members()).some((m) => m.includes("learner")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(await members()).toEqual(["cp-1", "cp-2", "cp-3"]);
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("adds a worker: only the new machine is touched", async () => {
      declare([...declared, byName("worker-4")]);
      const { events } = await up();
      // Its install in maintenance mode is its own apply; no other machine sees a call that changes it.
      expect(touched(events).filter((n) => n !== "worker-4")).toEqual([]);
      expect((await sim.node(byName("worker-4").address)).configured).toBe(true);
      expect(await kubeNodes()).toContain("worker-4");
      await settled();
    });

    it("adds a control plane with a worker config change: the new member is promoted before any worker changes", async () => {
      declare([...declared.slice(0, 3), byName("cp-4"), ...declared.slice(3)], {
        "talos-cluster:patches": { worker: [{ machine: { sysctls: { "net.core.somaxconn": "4096" } } }] },
      });
      const { events } = await up();
      const promoted = events.findIndex((e) => e.event === "etcd-learner-promoted" && names.get(e.node) === "cp-4");
      const firstWorkerApply = events.findIndex((e) => e.event === "apply" && names.get(e.node)?.startsWith("worker-"));
      expect(promoted).toBeGreaterThanOrEqual(0);
      expect(firstWorkerApply).toBeGreaterThan(promoted);
      expect(named(events, "apply").filter((n) => n.startsWith("worker-"))).toEqual(["worker-1", "worker-2", "worker-3", "worker-4"]);
      expect(await members()).toEqual(["cp-1", "cp-2", "cp-3", "cp-4"]);
      await settled();
    });

    it("removes a worker: drained, reset into maintenance mode, its Node deleted, nothing of it left in state", async () => {
      declare(declared.filter((n) => n.name !== "worker-4"));
      const { events, output } = await up();
      expect(touched(events)).toEqual(["worker-4"]);
      const order = events.filter((e) => names.get(e.node) === "worker-4").map((e) => e.event);
      expect(order.indexOf("reset")).toBeGreaterThanOrEqual(0);
      expect(order.indexOf("wipe")).toBeGreaterThan(order.indexOf("reset"));
      expect(output).toContain("worker-4");
      await backInMaintenance("worker-4");
      expect(await kubeNodes()).not.toContain("worker-4");
      expect(ws.state().text).not.toContain(byName("worker-4").address);
      await settled();
    });

    it("removes a control plane: etcd's members are the declared control planes, and the next Talos upgrade rolls", async () => {
      declare(declared.filter((n) => n.name !== "cp-4"));
      const { events } = await up();
      expect(named(events, "etcd-leave")).toEqual(["cp-4"]);
      expect(await members()).toEqual(controlPlaneNames());
      expect(await kubeNodes()).not.toContain("cp-4");
      await backInMaintenance("cp-4");
      await settled();

      config = { ...config, "talos-cluster:talosVersion": "v1.11.6" };
      ws.writeConfig(config);
      const upgrade = await up();
      expect(named(upgrade.events, "upgrade")).toEqual(declared.map((n) => n.name));
      await settled();
    });

    it("replaces a stopped control plane with a machine at a new address: the dead member removed, the new one promoted", async () => {
      await sim.stop(byName("cp-3").address);
      declare(declared.map((n) => (n.name === "cp-3" ? spare() : n)));
      const { events } = await up();
      expect(named(events, "etcd-member-removed")).toEqual(["cp-3"]);
      // The new machine joins as soon as its config is installed (a learner does not count for
      // quorum, so the dead member does not block it); both happen before the up ends.
      expect(named(events, "etcd-learner-promoted")).toEqual(["cp-3 (new machine)"]);
      // Before it removes a member, the rollout takes a verified snapshot from a control plane that stays.
      expect(touched(events.filter((e) => e.event !== "snapshot")).filter((n) => !n.startsWith("cp-3"))).toEqual([]);
      expect(named(events, "snapshot")).toContain("cp-1");
      expect(named(events, "snapshot")).not.toContain("cp-3");
      expect(await members()).toEqual(["cp-1", "cp-2", "cp-3"]);
      expect((await sim.etcdMembers()).flatMap((c) => c.members).map((m) => m.address)).not.toContain(byName("cp-3").address);
      await settled();
    });

    it("refuses at preview what it cannot do safely, naming the keys, before touching any machine", async () => {
      const before = declared;
      declare(before.filter((n) => n.name !== "cp-2" && n.name !== "cp-3"));
      const tooMany = ws.run(["preview"]);
      expect(tooMany.code).not.toBe(0);
      expect(tooMany.output).toMatch(/control plane/);
      expect(tooMany.output).toContain("nodes");

      const reused = { ...byName("worker-4"), address: byName("worker-3").address };
      declare([...before.filter((n) => n.name !== "worker-3"), reused]);
      const readdressed = ws.run(["preview"]);
      expect(readdressed.code).not.toBe(0);
      expect(readdressed.output).toMatch(/nodes\[\d+\]\.address/);

      declare(before);
      const { events } = await sim.during(() => ws.must(["preview"]));
      expect(events).toEqual([]);
    });
  },
  { controlPlane: true },
);
