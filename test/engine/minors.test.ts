// Today's Talos from an older minor: a 3+2 cluster created on Talos v1.12.6 with Kubernetes 1.35
// moves to v1.13.9 with Kubernetes 1.36, then to v1.14.1 with Kubernetes 1.37, each in one `up`
// that the rollout takes node by node through its gates, each Kubernetes version inside the
// support of the release that runs it (machinery's compatibility data). The simulator answers as
// each release does (LifecycleService from 1.13, the installer's pre-flight), with a real etcd and
// kube-apiserver, so the rollout's checks through Kubernetes run as on a cluster.
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import {
  controlPlaneFlags,
  describeEngine,
  downtimes,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  type TimelineEvent,
  Workspace,
} from "./workspace";

const STACK = "minors";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.minors;

describeEngine(
  "a cluster moved across Talos minors, v1.12.6 to v1.13.9 to v1.14.1, Kubernetes along",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    let nodes: SimNodeConfig[];
    let config: Record<string, unknown>;
    const names = new Map<string, string>();

    const up = async (changes: Record<string, unknown>) => {
      config = { ...config, ...changes };
      ws.writeConfig(config);
      const { result, events } = await sim.during(() => ws.must(["up", "--yes", "--skip-preview"]));
      return { events, output: result.output };
    };
    const named = (events: TimelineEvent[], kind: TimelineEvent["event"]) =>
      events.filter((e) => e.event === kind).map((e) => names.get(e.node) ?? e.node);
    /** Each node's release and the kubelet of the config it runs. */
    const running = async () =>
      Object.fromEntries(
        (await sim.nodes()).map((n) => [names.get(n.address), `${n.talosVersion} ${/kubelet:v([\d.]+)/.exec(n.config ?? "")?.[1]}`]),
      );
    const all = (value: string) => Object.fromEntries(nodes.map((n) => [n.name, value]));

    beforeAll(async () => {
      nodes = simNodes(NET, { controlPlanes: 3, workers: 2 });
      for (const n of nodes) names.set(n.address, n.name);
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        ["-reboot-time", "1s", "-talos-version", "v1.12.6", "-factory-versions", "v1.12.6,v1.13.9,v1.14.1", ...controlPlaneFlags()],
      );
      config = simStackConfig(sim, STACK, nodes, {
        "talos-cluster:talosVersion": "v1.12.6",
        "talos-cluster:kubernetesVersion": "1.35.0",
        "talos-cluster:nodeTimeout": "30s",
        "talos-cluster:upgrade": { healthTimeout: "45s" },
      });
      ws = new Workspace(STACK, config);
      await up({});
      expect(await running()).toEqual(all("v1.12.6 1.35.0"));
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("moves to Talos v1.13.9 and Kubernetes 1.36 in one up: each node upgraded once, control planes first and alone", async () => {
      const { events } = await up({ "talos-cluster:talosVersion": "v1.13.9", "talos-cluster:kubernetesVersion": "1.36.0" });
      expect(named(events, "upgrade")).toEqual(nodes.map((n) => n.name));
      expect(await running()).toEqual(all("v1.13.9 1.36.0"));
      const downs = downtimes(events);
      for (const d of downs.filter((x) => names.get(x.node)?.startsWith("cp-"))) {
        expect(downs.filter((o) => o !== d && o.from < d.to && d.from < o.to).map((o) => names.get(o.node))).toEqual([]);
      }
    });

    it("moves on to Talos v1.14.1 and Kubernetes 1.37, and a second up changes nothing", async () => {
      const { events } = await up({ "talos-cluster:talosVersion": "v1.14.1", "talos-cluster:kubernetesVersion": "1.37.0" });
      expect(named(events, "upgrade")).toEqual(nodes.map((n) => n.name));
      expect(await running()).toEqual(all("v1.14.1 1.37.0"));
      const out = JSON.parse(ws.must(["stack", "output", "nodes", "--json"]).stdout) as { runningTalosVersion: string }[];
      expect(out.map((n) => n.runningTalosVersion)).toEqual(nodes.map(() => "v1.14.1"));
      const again = await up({});
      expect(again.events).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });
  },
  { controlPlane: true },
);
