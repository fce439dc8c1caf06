// A Kubernetes minor upgrade the way `talosctl upgrade-k8s` does it, on a 3+3 cluster of simulated
// Talos v1.14.1 machines with a real etcd and kube-apiserver (the binary setup builds stays; the
// mirror pods and kubelets carry the versions): the preview refuses a skipped minor, a downgrade and
// a feature gate the new release removed, naming the keys; the up pre-pulls every image, then moves
// every kube-apiserver, every kube-controller-manager, every kube-scheduler, kube-proxy, and the
// kubelets (control planes, then workers), with no kubelet ever newer than an API server; a kubelet
// that never turns Ready stops it naming the node, and the next up resumes there; then nothing.
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

const STACK = "kubernetes";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.kubernetes;

const FROM = "1.35.2";
const TO = "1.36.0";

/** "1.36.0" as a number that orders minors and patches. */
const rank = (version: string): number => {
  const [major = 0, minor = 0, patch = 0] = version.replace(/^v/, "").split(".").map(Number);
  return major * 1_000_000 + minor * 1_000 + patch;
};

describeEngine(
  "Kubernetes upgraded one minor the upgrade-k8s way",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    let nodes: SimNodeConfig[];
    let config: Record<string, unknown>;
    const names = new Map<string, string>();
    const all: TimelineEvent[] = [];

    const write = (changes: Record<string, unknown>) => {
      config = { ...config, ...changes };
      ws.writeConfig(config);
    };
    const up = async () => {
      const { result, events } = await sim.during(() => ws.run(["up", "--yes", "--skip-preview"]));
      all.push(...events);
      return { events, code: result.code, output: result.output };
    };
    const name = (e: TimelineEvent) => names.get(e.node) ?? e.node;
    /** The components each node started, as "cp-1 kube-apiserver 1.36.0", in timeline order. */
    const started = (events: TimelineEvent[]) =>
      events.filter((e) => e.event === "component").map((e) => `${name(e)} ${e.component} ${e.version}`);
    const kubeconfig = () => JSON.parse(ws.must(["stack", "output", "kubeconfig", "--show-secrets", "--json"]).stdout) as string;

    beforeAll(async () => {
      nodes = simNodes(NET, { controlPlanes: 3, workers: 3 });
      for (const n of nodes) names.set(n.address, n.name);
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        ["-reboot-time", "1s", "-talos-version", "v1.14.1", "-factory-versions", "v1.14.1", ...controlPlaneFlags()],
      );
      config = simStackConfig(sim, STACK, nodes, {
        "talos-cluster:talosVersion": "v1.14.1",
        "talos-cluster:kubernetesVersion": FROM,
        "talos-cluster:nodeTimeout": "30s",
        "talos-cluster:upgrade": { healthTimeout: "30s", maxUnavailableWorkers: 2 },
      });
      ws = new Workspace(STACK, config);
      const first = await up();
      if (first.code !== 0) throw new Error(`first up failed:\n${first.output}`);
      all.length = 0;
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("refuses a skipped minor, a downgrade and a removed feature gate at preview, naming the keys, touching nothing", async () => {
      write({ "talos-cluster:kubernetesVersion": "1.37.0" });
      const skip = await sim.during(() => ws.run(["preview"]));
      expect(skip.result.code).not.toBe(0);
      expect(skip.result.output).toContain("talos-cluster:kubernetesVersion");
      expect(skip.result.output).toMatch(/1\.36/);

      write({ "talos-cluster:kubernetesVersion": "1.34.4" });
      const down = await sim.during(() => ws.run(["preview"]));
      expect(down.result.code).not.toBe(0);
      expect(down.result.output).toContain("talos-cluster:kubernetesVersion");

      // HonorPVReclaimPolicy is a feature gate Kubernetes 1.36 removed (go-kubernetes' checks); a
      // 1.14-contract cluster sets the API server's flags in its KubeAPIServerConfig document.
      write({
        "talos-cluster:kubernetesVersion": TO,
        "talos-cluster:patches": {
          controlplane: [
            { apiVersion: "v1alpha1", kind: "KubeAPIServerConfig", extraArgs: { "feature-gates": "HonorPVReclaimPolicy=true" } },
          ],
        },
      });
      const gate = await sim.during(() => ws.run(["preview"]));
      delete config["talos-cluster:patches"];
      expect(gate.result.code).not.toBe(0);
      expect(gate.result.output).toContain("talos-cluster:patches.controlplane[0]");
      expect(gate.result.output).toContain("HonorPVReclaimPolicy");

      expect([...skip.events, ...down.events, ...gate.events]).toEqual([]);
      write({ "talos-cluster:kubernetesVersion": FROM });
    });

    it("previews the path and the order before anything runs", async () => {
      write({ "talos-cluster:kubernetesVersion": TO });
      const { result, events } = await sim.during(() => ws.must(["preview", "--diff"]));
      expect(result.output).toContain(`${FROM} -> ${TO}`);
      expect(result.output).toMatch(/pre-pull/);
      expect(result.output).toMatch(/kube-apiserver[\s\S]*kube-controller-manager[\s\S]*kube-scheduler[\s\S]*kubelet/);
      expect(events).toEqual([]);
    });

    it("stops at a kubelet that never turns Ready, naming the node and the phase; the next up resumes there", async () => {
      const worker3 = nodes.find((n) => n.name === "worker-3");
      if (worker3 === undefined) throw new Error("no worker-3");
      await sim.fault(worker3.address, { kubeletNeverReady: true });
      const failed = await up();
      expect(failed.code).not.toBe(0);
      expect(failed.output).toContain("worker-3");
      expect(failed.output).toMatch(/kubelet/);
      // Every control-plane component moved before it; no control plane is touched again below.
      const cpsDone = started(failed.events).filter((s) => s.startsWith("cp-"));
      expect(cpsDone).toHaveLength(3 * 4);

      await sim.fault(worker3.address, { kubeletNeverReady: false });
      const resumed = await up();
      if (resumed.code !== 0) throw new Error(`resumed up failed:\n${resumed.output}`);
      // Nothing that finished is restarted; worker-3's kubelet (already on the new image) is awaited.
      expect(started(resumed.events).filter((s) => !s.startsWith("worker-3 "))).toEqual([]);
      const node = await kubeGet(kubeconfig(), "/api/v1/nodes/worker-3");
      const status = node.body.status as { nodeInfo: { kubeletVersion: string }; conditions: { type: string; status: string }[] };
      expect(status.nodeInfo.kubeletVersion).toBe(`v${TO}`);
      expect(status.conditions.find((c) => c.type === "Ready")?.status).toBe("True");
    });

    it("moved the components in upgrade-k8s' order, pre-pulled first, never a kubelet newer than an API server", () => {
      const pulls = all.findIndex((e) => e.event === "image-pull");
      const firstStart = all.findIndex((e) => e.event === "component" && e.version === TO);
      expect(pulls).toBeGreaterThanOrEqual(0);
      expect(pulls).toBeLessThan(firstStart);
      // Each node pulled the kubelet image; control planes their components' too.
      for (const n of nodes) {
        const pulled = all.filter((e) => e.event === "image-pull" && name(e) === n.name).map((e) => e.detail ?? "");
        expect(pulled.some((image) => image.includes("kubelet"))).toBe(true);
        if (n.role === "controlplane") expect(pulled.some((image) => image.includes("kube-apiserver"))).toBe(true);
      }
      const order = started(all).filter((s) => s.endsWith(TO));
      const phase = (s: string) => s.split(" ")[1];
      const phases = order.map(phase).filter((p, i, a) => p !== a[i - 1]);
      expect(phases.filter((p) => p !== "kube-proxy")).toEqual(["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"]);
      const kubelets = order.filter((s) => phase(s) === "kubelet").map((s) => s.split(" ")[0]);
      expect(kubelets.slice(0, 3)).toEqual(["cp-1", "cp-2", "cp-3"]);
      expect([...kubelets.slice(3)].sort()).toEqual(["worker-1", "worker-2", "worker-3"]);
      // The skew policy: at every moment the newest kubelet is no newer than the oldest API server.
      const apiserver = new Map<string, string>();
      const kubelet = new Map<string, string>();
      for (const n of nodes) {
        if (n.role === "controlplane") apiserver.set(n.name, FROM);
        kubelet.set(n.name, FROM);
      }
      for (const e of all.filter((x) => x.event === "component")) {
        if (e.component === "kube-apiserver") apiserver.set(name(e), e.version ?? "");
        if (e.component === "kubelet") kubelet.set(name(e), e.version ?? "");
        const oldestAPIServer = Math.min(...[...apiserver.values()].map(rank));
        const newestKubelet = Math.max(...[...kubelet.values()].map(rank));
        expect(newestKubelet, `after ${name(e)} ${e.component} ${e.version}`).toBeLessThanOrEqual(oldestAPIServer);
      }
    });

    it("synced the bootstrap manifests: kube-proxy runs the new image", async () => {
      const ds = await kubeGet(kubeconfig(), "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy");
      const containers = (ds.body.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers;
      expect(containers.map((c) => c.image)).toEqual([expect.stringContaining(`v${TO}`)]);
    });

    it("a second up makes no call and a refreshing preview finds nothing", async () => {
      const again = await up();
      expect(again.code).toBe(0);
      expect(again.events.filter((e) => !e.event.startsWith("etcd-leader"))).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });
  },
  { controlPlane: true },
);
