// End to end with the addons on: the real CLI, engine, talos, talosnode and Kubernetes plugins and
// program, against simulated Talos nodes whose cluster runs a real etcd and kube-apiserver
// (talos-sim -etcd -kube-apiserver). The charts and the approver's manifest are fixtures served
// from loopback (scripts/chart-repo.ts): each renders only objects that need no controller, and the
// charts' ConfigMap carries the values Helm got. One cluster of 3 control planes and 2 workers
// for the steps, in order; a second, small simulator for an API server that starts late or never.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ciliumValues, metricsServerValues } from "../../lib/addons";
import { TYPES } from "../../lib/tokens";
import { ADDON_DEFAULTS } from "../../lib/versions";
import { APPROVER_FIXTURE, ChartRepo, fixtureConfigMap } from "../../scripts/chart-repo";
import { SUITES } from "../addresses";
import {
  controlPlaneFlags,
  describeEngine,
  jsonStream,
  kubeGet,
  type RunResult,
  SIM_KUBERNETES_VERSION,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  Workspace,
} from "./workspace";

// Nets: the main cluster, the late API server's, the never-ready one's. Ports: the main simulator's
// factory and control, the charts, then factory and control of the late and the never-ready one.
const {
  nets: [NET, LATE_NET, NEVER_NET],
  ports: [FACTORY_PORT, CONTROL_PORT, CHART_PORT, LATE_FACTORY, LATE_CONTROL, NEVER_FACTORY, NEVER_CONTROL],
} = SUITES.addons;
/** Versions the fixture repository has besides the pinned ones: newer, so a chart left unpinned would get them. */
const OTHER_VERSIONS = { cilium: "1.18.5", metricsServer: "3.13.1", approver: "0.11.1" };
const MISSING_VERSION = "3.99.0";

interface EngineEvent {
  /** "pre": the step starts; "done": its outputs are in. */
  at: "pre" | "done";
  op: string;
  urn: string;
  type: string;
}
/** The resource steps of `pulumi up --json`, in the order the engine reported them. */
const eventsOf = (stdout: string): EngineEvent[] =>
  jsonStream(stdout).flatMap((e): EngineEvent[] => {
    const { resourcePreEvent: pre, resOutputsEvent: done } = e as Record<string, { metadata: Omit<EngineEvent, "at"> } | undefined>;
    if (pre) return [{ at: "pre", op: pre.metadata.op, urn: pre.metadata.urn, type: pre.metadata.type }];
    if (done) return [{ at: "done", op: done.metadata.op, urn: done.metadata.urn, type: done.metadata.type }];
    return [];
  });
const nameOf = (urn: string) => urn.split("::").pop() ?? urn;
/** What changed, as [op, resource name], once per step. */
const changes = (events: EngineEvent[]) => events.filter((e) => e.at === "done" && e.op !== "same").map((e) => [e.op, nameOf(e.urn)]);

/**
 * Error diagnostics of `pulumi up --json`, as [resource name, message]: from its event stream, and
 * from the summary it prints instead when the preview fails.
 */
const errorsOf = (stdout: string): [string, string][] =>
  jsonStream(stdout).flatMap((e) => {
    type Diagnostic = { urn?: string; severity: string; message: string };
    const { diagnosticEvent, diagnostics } = e as { diagnosticEvent?: Diagnostic; diagnostics?: Diagnostic[] };
    return [...(diagnosticEvent ? [diagnosticEvent] : []), ...(diagnostics ?? [])].flatMap((d): [string, string][] =>
      d.severity === "error" && d.urn !== undefined ? [[nameOf(d.urn), d.message]] : [],
    );
  });

/** The addons' stack config: every one on, from the fixture server. */
function addonsConfig(repo: ChartRepo, overrides: { metricsServer?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    cilium: { repository: repo.chartsUrl },
    kubeletServingCertApprover: { repository: repo.approverUrl },
    metricsServer: { repository: repo.chartsUrl, ...overrides.metricsServer },
  };
}

interface FixtureData {
  chart: string;
  version: string;
  values: unknown;
}
/** A fixture chart's ConfigMap, read back through the API server with the stack's kubeconfig. */
async function fixture(kubeconfig: string, chart: string): Promise<FixtureData | undefined> {
  const r = await kubeGet(kubeconfig, `/api/v1/namespaces/kube-system/configmaps/${fixtureConfigMap(chart)}`);
  if (r.status === 404) return undefined;
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const data = r.body.data as Record<string, string>;
  return { chart: data.chart ?? "", version: data.version ?? "", values: JSON.parse(data["values.json"] ?? "null") };
}

/** The Helm releases in kube-system (their storage Secrets), as name -> revisions. */
async function helmReleases(kubeconfig: string): Promise<Record<string, number>> {
  const r = await kubeGet(kubeconfig, "/api/v1/namespaces/kube-system/secrets?labelSelector=owner%3Dhelm");
  expect(r.status).toBe(200);
  const out: Record<string, number> = {};
  for (const s of r.body.items as { metadata: { labels: Record<string, string> } }[]) {
    const { name = "", version = "0" } = s.metadata.labels;
    out[name] = Math.max(out[name] ?? 0, Number(version));
  }
  return out;
}

describeEngine(
  "end to end with the addons on: a real API server, fixture charts",
  () => {
    let repo: ChartRepo;
    let sim: Simulator;
    const smallSims: Simulator[] = [];
    let ws: Workspace;
    let nodes: SimNodeConfig[];
    let config: Record<string, unknown>;
    let kubeconfig: string;
    const late: { ws: Workspace; up: Promise<RunResult & { seconds: number }> }[] = [];

    const readKubeconfig = () => JSON.parse(ws.must(["stack", "output", "kubeconfig", "--show-secrets", "--json"]).stdout) as string;

    beforeAll(async () => {
      repo = await ChartRepo.start(
        CHART_PORT,
        [
          { name: ADDON_DEFAULTS.cilium.chart, versions: [ADDON_DEFAULTS.cilium.version, OTHER_VERSIONS.cilium] },
          { name: ADDON_DEFAULTS.metricsServer.chart, versions: [ADDON_DEFAULTS.metricsServer.version, OTHER_VERSIONS.metricsServer] },
        ],
        {
          versions: [ADDON_DEFAULTS.kubeletServingCertApprover.version, OTHER_VERSIONS.approver],
          image: ADDON_DEFAULTS.kubeletServingCertApprover.image,
        },
      );

      // Two small simulators first, each with one one-node cluster that spends most of its time
      // waiting for its API server while the main cluster's steps run: "late" starts 30 s after
      // the bootstrap and is waited for (the gate's default timeout); "never" is an hour late, and
      // its gate gives up after 10 s.
      for (const [i, name] of ["late", "never"].entries()) {
        const [node] = simNodes(i === 0 ? LATE_NET : NEVER_NET, { controlPlanes: 1, workers: 0 }) as [SimNodeConfig];
        const [factoryPort, controlPort] = i === 0 ? [LATE_FACTORY, LATE_CONTROL] : [NEVER_FACTORY, NEVER_CONTROL];
        const small = await Simulator.start([node.address], factoryPort, controlPort, controlPlaneFlags(i === 0 ? "30s" : "1h"));
        smallSims.push(small);
        const w = new Workspace(name, {
          ...simStackConfig(small, name, [{ ...node, name: `${name}-cp` }]),
          "talos-cluster:nodeTimeout": "60s",
          "talos-cluster:addons": addonsConfig(repo),
          ...(name === "never" ? { "talos-cluster:kubernetesReadyTimeout": "10s" } : {}),
        });
        const started = Date.now();
        late.push({ ws: w, up: w.runAsync(["up", "--yes"]).then((r) => ({ ...r, seconds: (Date.now() - started) / 1000 })) });
      }

      nodes = simNodes(NET, { controlPlanes: 3, workers: 2 });
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        controlPlaneFlags(),
      );
      config = {
        ...simStackConfig(sim, "addons", nodes),
        "talos-cluster:nodeTimeout": "60s",
        "talos-cluster:addons": addonsConfig(repo),
      };
      ws = new Workspace("addons", config);
    });
    afterAll(async () => {
      sim?.dispose();
      for (const small of smallSims) small.dispose();
      await Promise.all(late.map((l) => l.up));
      for (const l of late) l.ws.dispose();
      ws?.dispose();
      repo?.close();
    });

    it("installs the Kubernetes provider and every addon after the API server is ready, the CNI first, then the rest once every node is Ready", () => {
      const up = ws.must(["up", "--yes", "--json"]);
      const events = eventsOf(up.stdout);
      const index = (at: EngineEvent["at"], name: string) => {
        const i = events.findIndex((e) => e.at === at && nameOf(e.urn) === name);
        expect(i, `${at} ${name}`).toBeGreaterThanOrEqual(0);
        return i;
      };
      const created = (type: string) =>
        events.filter((e) => e.at === "done" && e.op === "create" && e.type === type).map((e) => nameOf(e.urn));
      expect(created("pulumi:providers:kubernetes")).toEqual(["addons-k8s"]);
      expect(created("kubernetes:helm.sh/v3:Release").sort()).toEqual(["addons-cilium", "addons-metrics-server"]);
      // The manifest's ConfigFile is a component: its children carry the creates.
      const approver = "addons-kubelet-serving-cert-approver";
      expect(created("kubernetes:apps/v1:Deployment")).toEqual([`${approver}:kube-system/${APPROVER_FIXTURE.deployment}`]);
      expect(created("kubernetes:core/v1:ConfigMap")).toEqual([`${approver}:kube-system/${APPROVER_FIXTURE.configMap}`]);
      const approverDone = events.reduce(
        (last, e, i) => (e.at === "done" && e.urn.includes("$kubernetes:yaml/v2:ConfigFile$") ? i : last),
        -1,
      );

      // The API server gate, then the provider, then Cilium; the nodes gate only once Cilium is
      // installed; the approver and metrics-server only after it, metrics-server last.
      expect(index("done", "addons-api-server-ready")).toBeLessThan(index("pre", "addons-k8s"));
      expect(index("done", "addons-k8s")).toBeLessThan(index("pre", "addons-cilium"));
      expect(index("done", "addons-cilium")).toBeLessThan(index("pre", "addons-nodes-ready"));
      expect(index("done", "addons-nodes-ready")).toBeLessThan(index("pre", approver));
      expect(index("done", "addons-nodes-ready")).toBeLessThan(index("pre", "addons-metrics-server"));
      expect(approverDone).toBeLessThan(index("pre", "addons-metrics-server"));
      // Helm read the fixture repository: the index, then the pinned charts.
      expect(repo.requests).toEqual(
        expect.arrayContaining([
          "GET /charts/index.yaml",
          `GET /charts/cilium-${ADDON_DEFAULTS.cilium.version}.tgz`,
          `GET /charts/metrics-server-${ADDON_DEFAULTS.metricsServer.version}.tgz`,
          `GET /approver/v${ADDON_DEFAULTS.kubeletServingCertApprover.version}/deploy/standalone-install.yaml`,
        ]),
      );
    });

    it("installs each chart at its pinned version in kube-system, with the values the program computes", async () => {
      kubeconfig = readKubeconfig();
      expect(await fixture(kubeconfig, "cilium")).toEqual({
        chart: "cilium",
        version: ADDON_DEFAULTS.cilium.version,
        values: ciliumValues(),
      });
      // The approver is on, so metrics-server verifies the kubelets' serving certificates.
      expect(await fixture(kubeconfig, "metrics-server")).toEqual({
        chart: "metrics-server",
        version: ADDON_DEFAULTS.metricsServer.version,
        values: metricsServerValues(true),
      });
      expect(await helmReleases(kubeconfig)).toEqual({ cilium: 1, "metrics-server": 1 });
    });

    it("applies the approver's manifest at its version, with the image pinned to it", async () => {
      const { version, image } = ADDON_DEFAULTS.kubeletServingCertApprover;
      const cm = await kubeGet(kubeconfig, `/api/v1/namespaces/kube-system/configmaps/${APPROVER_FIXTURE.configMap}`);
      expect((cm.body.data as Record<string, string>).version).toBe(version);
      const deployment = await kubeGet(kubeconfig, `/apis/apps/v1/namespaces/kube-system/deployments/${APPROVER_FIXTURE.deployment}`);
      const spec = deployment.body.spec as { template: { spec: { containers: { image: string }[] } } };
      expect(spec.template.spec.containers.map((c) => c.image)).toEqual([`${image}:${version}`]);
    });

    it("lists every node Ready with its kubelet version, as kubectl get nodes does with the stack's kubeconfig", async () => {
      const r = await kubeGet(kubeconfig, "/api/v1/nodes");
      expect(r.status).toBe(200);
      type Node = {
        metadata: { name: string };
        status: { conditions: { type: string; status: string }[]; nodeInfo: { kubeletVersion: string } };
      };
      const listed = (r.body.items as Node[]).map((n) => ({
        name: n.metadata.name,
        ready: n.status.conditions.find((c) => c.type === "Ready")?.status,
        kubelet: n.status.nodeInfo.kubeletVersion,
      }));
      expect(listed.sort((a, b) => a.name.localeCompare(b.name))).toEqual(
        nodes
          .map((n) => ({ name: n.name, ready: "True", kubelet: `v${SIM_KUBERNETES_VERSION}` }))
          .sort((a, b) => a.name.localeCompare(b.name)),
      );

      // The same with kubectl itself, a client nobody here wrote, where the machine has one.
      const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
      if (kubectl.error !== undefined) {
        console.warn("kubectl is not on PATH: checked with the API only");
        return;
      }
      const file = join(ws.dir, "kubeconfig");
      writeFileSync(file, kubeconfig, { mode: 0o600 });
      const got = spawnSync("kubectl", ["--kubeconfig", file, "get", "nodes", "-o", "json"], { encoding: "utf8" });
      expect(got.status, got.stderr).toBe(0);
      const viaKubectl = (JSON.parse(got.stdout).items as Node[]).map((n) => [
        n.metadata.name,
        n.status.conditions.find((c) => c.type === "Ready")?.status,
        n.status.nodeInfo.kubeletVersion,
      ]);
      expect(viaKubectl.sort()).toEqual(nodes.map((n) => [n.name, "True", `v${SIM_KUBERNETES_VERSION}`]).sort());
    });

    it("changes nothing on a second up, and preview --refresh --expect-no-changes passes", async () => {
      const up = ws.must(["up", "--yes", "--json"]);
      expect(changes(eventsOf(up.stdout))).toEqual([]);
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
      expect(await helmReleases(kubeconfig)).toEqual({ cilium: 1, "metrics-server": 1 });
    });

    it("renews the talosconfig and kubeconfig on an up once they have less than 30 days left, touching no node and replacing no addon", async () => {
      // A stack whose credentials were minted 340 days ago: their recorded ends moved to 25 days
      // from now, as the state backend would hold them then.
      const stateFile = join(ws.dir, "near-expiry.json");
      const exported = JSON.parse(ws.must(["stack", "export"]).stdout) as {
        deployment: { resources: { type: string; outputs?: Record<string, unknown> }[] };
      };
      const creds = exported.deployment.resources.find((r) => r.type === TYPES.credentials);
      expect(creds?.outputs).toBeDefined();
      const soon = new Date(Date.now() + 25 * 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
      Object.assign(creds?.outputs ?? {}, { talosconfigNotAfter: soon, kubeconfigNotAfter: soon });
      writeFileSync(stateFile, JSON.stringify(exported));
      ws.must(["stack", "import", "--file", stateFile]);
      const talosconfig = JSON.parse(ws.must(["stack", "output", "talosconfig", "--show-secrets", "--json"]).stdout) as string;

      const preview = ws.must(["preview", "--json"]);
      expect(preview.stdout).toContain("addons-credentials");
      const { result: up, events: timeline } = await sim.during(() => ws.must(["up", "--yes", "--json"]));
      const changed = changes(eventsOf(up.stdout));
      console.log(`renewed credentials: ${JSON.stringify(changed)}`);
      // The provider takes the new kubeconfig in place (its cluster identifier is fixed) and the
      // gates check it; no addon and no node changes.
      expect(changed.sort()).toEqual([
        ["update", "addons-api-server-ready"],
        ["update", "addons-credentials"],
        ["update", "addons-k8s"],
        ["update", "addons-nodes-ready"],
      ]);
      expect(timeline).toEqual([]);
      const renewed = readKubeconfig();
      expect(renewed).not.toBe(kubeconfig);
      expect(JSON.parse(ws.must(["stack", "output", "talosconfig", "--show-secrets", "--json"]).stdout)).not.toBe(talosconfig);
      // Both end a year from now again.
      const renewedState = ws.state().resources.find((r) => r.type === TYPES.credentials)?.outputs ?? {};
      for (const key of ["talosconfigNotAfter", "kubeconfigNotAfter"]) {
        const daysLeft = (Date.parse(String(renewedState[key])) - Date.now()) / (24 * 3600 * 1000);
        expect(daysLeft, key).toBeGreaterThan(364);
      }
      kubeconfig = renewed;
      // The new kubeconfig works, and no Helm upgrade ran.
      expect(await helmReleases(kubeconfig)).toEqual({ cilium: 1, "metrics-server": 1 });
      expect(changes(eventsOf(ws.must(["up", "--yes", "--json"]).stdout))).toEqual([]);
    });

    it("deletes only metrics-server when it is switched off, and installs only it when switched on again", async () => {
      ws.writeConfig({ ...config, "talos-cluster:addons": addonsConfig(repo, { metricsServer: { enabled: false } }) });
      const off = ws.must(["up", "--yes", "--json"]);
      expect(changes(eventsOf(off.stdout))).toEqual([["delete", "addons-metrics-server"]]);
      expect(await fixture(kubeconfig, "metrics-server")).toBeUndefined();
      expect(await helmReleases(kubeconfig)).toEqual({ cilium: 1 });

      ws.writeConfig(config);
      const on = ws.must(["up", "--yes", "--json"]);
      expect(changes(eventsOf(on.stdout))).toEqual([["create", "addons-metrics-server"]]);
      expect((await fixture(kubeconfig, "metrics-server"))?.version).toBe(ADDON_DEFAULTS.metricsServer.version);
      expect(await helmReleases(kubeconfig)).toEqual({ cilium: 1, "metrics-server": 1 });
    });

    it("fails only that release, with Helm's message, for a chart version the repository lacks", async () => {
      ws.writeConfig({ ...config, "talos-cluster:addons": addonsConfig(repo, { metricsServer: { version: MISSING_VERSION } }) });
      const up = ws.run(["up", "--yes", "--json"]);
      expect(up.code).not.toBe(0);
      // The release's check fetches the chart, so the up stops in its preview: nothing changes.
      const failed = errorsOf(up.stdout).filter(([name]) => name !== "talos-cluster-addons");
      expect(failed.map(([name]) => name)).toEqual(["addons-metrics-server"]);
      expect(failed[0]?.[1]).toContain(`chart "metrics-server" version "${MISSING_VERSION}" not found in ${repo.chartsUrl} repository`);
      expect(changes(eventsOf(up.stdout)).filter(([, name]) => name !== "addons-metrics-server")).toEqual([]);
      expect((await fixture(kubeconfig, "metrics-server"))?.version).toBe(ADDON_DEFAULTS.metricsServer.version);
      expect(await helmReleases(kubeconfig)).toEqual({ cilium: 1, "metrics-server": 1 });

      ws.writeConfig(config);
      expect(changes(eventsOf(ws.must(["up", "--yes", "--json"]).stdout))).toEqual([]);
      expect((await fixture(kubeconfig, "metrics-server"))?.version).toBe(ADDON_DEFAULTS.metricsServer.version);
    });

    it("waits on a new cluster's first up for an API server that starts 30 s after the bootstrap", async () => {
      const [first] = late;
      const up = await (first as (typeof late)[number]).up;
      expect(up.code, up.output).toBe(0);
      expect(up.seconds).toBeGreaterThanOrEqual(30);
      // The gate saw the API server refuse connections before it answered.
      expect(up.output).toMatch(/late-api-server-ready.*api-server: waiting for the API server ready \(\/readyz\).*connection refused/);
      const ws2 = (first as (typeof late)[number]).ws;
      const kc = JSON.parse(ws2.must(["stack", "output", "kubeconfig", "--show-secrets", "--json"]).stdout) as string;
      expect((await fixture(kc, "cilium"))?.values).toEqual(ciliumValues());
      expect(await helmReleases(kc)).toEqual({ cilium: 1, "metrics-server": 1 });
    });

    it("fails the first up naming the api-server stage when the API server does not start within kubernetesReadyTimeout", async () => {
      const second = late[1] as (typeof late)[number];
      const up = await second.up;
      expect(up.code).not.toBe(0);
      console.log(
        up.output
          .split("\n")
          .filter((l) => l.includes("error: api-server"))
          .join("\n"),
      );
      expect(up.output).toContain("api-server: the API server ready (/readyz) not ready within 10s");
      const created = second.ws.state().resources.map((r) => r.type);
      expect(created).not.toContain("pulumi:providers:kubernetes");
      expect(created).not.toContain("kubernetes:helm.sh/v3:Release");
    });
  },
  { controlPlane: true },
);
