import { afterAll, beforeAll, expect, it } from "vitest";
import { TYPES } from "../../lib/tokens";
import { netPrefix, SUITES } from "../addresses";
import { describeEngine, type RunResult, runDrift, Simulator, stackFileConfig, Workspace } from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.drift;

const STACK = "drift";
const urn = (typeChain: string, name: string) => `urn:pulumi:${STACK}::talos-cluster::${typeChain}::${name}`;
// Parents first: a targeted up creates a child only with its component.
const TARGETS = [
  urn(TYPES.image, "dev"),
  urn("talos-cluster:index:TalosImage$talos:imagefactory/schematic:Schematic", "dev-schematic"),
  urn(TYPES.cluster, "dev"),
  urn("talos-cluster:index:TalosCluster$talos:machine/secrets:Secrets", "dev-secrets"),
];

describeEngine("npm run drift against a real stack", () => {
  let sim: Simulator;
  let ws: Workspace;
  let config: Record<string, unknown>;
  const drift = (...args: string[]): RunResult => runDrift(ws, ...args);

  beforeAll(async () => {
    sim = await Simulator.start([`${netPrefix(NET)}.10`], FACTORY_PORT, CONTROL_PORT);
    // Addons off: a targeted up still registers the Kubernetes provider, whose parent it would not create.
    const off = { enabled: false };
    config = {
      ...stackFileConfig("Pulumi.dev.yaml"),
      "talos:imageFactoryUrl": sim.factoryUrl,
      "talos-cluster:addons": { cilium: off, kubeletServingCertApprover: off, metricsServer: off },
    };
    ws = new Workspace(STACK, config);
    ws.must(["up", "--yes", "--skip-preview", ...TARGETS.flatMap((t) => ["--target", t])]);
  });
  afterAll(() => {
    sim?.dispose();
    ws?.dispose();
  });

  it("reports no drift and exits 0 for the resources that were created", () => {
    const r = drift("-s", STACK, ...TARGETS.flatMap((t) => ["--target", t]));
    expect(r.stdout.trim()).toBe(`${STACK}: no drift`);
    expect(r.code).toBe(0);
  });

  it("names the changed resource and exits 1 once the stack's config differs from what was deployed", () => {
    ws.writeConfig({ ...config, "talos-cluster:extensions": ["siderolabs/iscsi-tools"] });
    const r = drift("-s", STACK, ...TARGETS.flatMap((t) => ["--target", t]));
    expect(r.stdout.trim()).toMatch(
      new RegExp(
        `^${STACK}: drift: 1 resource: (update|replace) talos:imagefactory/schematic:Schematic::dev-schematic \\(id, schematic\\)$`,
      ),
    );
    expect(r.code).toBe(1);
  });

  it("exits 2 and says why when the stack does not exist", () => {
    const r = drift("-s", "no-such-stack");
    expect(r.stdout).toMatch(/^no-such-stack: preview failed: .*no-such-stack/m);
    expect(r.code).toBe(2);
  });
});
