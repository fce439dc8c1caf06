import { afterAll, expect, it } from "vitest";
import { TYPES } from "../../lib/tokens";
import { describeEngine, jsonStream, stackFileConfig, Workspace } from "./workspace";

interface PreviewStep {
  op: string;
  urn: string;
  type: string;
}
function previewSteps(stdout: string): PreviewStep[] {
  const [digest] = jsonStream(stdout) as { steps?: { op: string; urn: string; newState?: { type: string } }[] }[];
  return (digest?.steps ?? []).map((s) => ({ op: s.op, urn: s.urn, type: s.newState?.type ?? "" }));
}
const count = (steps: PreviewStep[], type: string) => steps.filter((s) => s.type === type).length;

describeEngine("pulumi preview of the dev and prod stacks", () => {
  const workspaces: Workspace[] = [];
  afterAll(() => {
    for (const w of workspaces) w.dispose();
  });

  for (const [stack, nodes] of [
    ["dev", 3],
    ["prod", 7],
  ] as const) {
    it(`plans the whole ${stack} cluster on a first preview`, () => {
      const ws = new Workspace(stack, stackFileConfig(`Pulumi.${stack}.yaml`));
      workspaces.push(ws);
      const preview = ws.must(["preview", "--json"]);
      const steps = previewSteps(preview.stdout);
      expect(steps.filter((s) => s.op !== "create" && s.type !== "pulumi:pulumi:Stack")).toEqual([]);
      expect(count(steps, TYPES.schematic)).toBe(1);
      expect(count(steps, TYPES.secrets)).toBe(1);
      expect(count(steps, TYPES.configApply)).toBe(nodes);
      expect(count(steps, TYPES.bootstrap)).toBe(1);
      expect(count(steps, TYPES.credentials)).toBe(1);
      expect(count(steps, TYPES.k8sProvider)).toBe(1);
      expect(count(steps, "kubernetes:helm.sh/v3:Release")).toBeGreaterThanOrEqual(1);
      expect(count(steps, TYPES.cluster)).toBe(1);
    });
  }

  it("previews a stack with a warning, such as an even number of control planes, and shows the warning", () => {
    const dev = stackFileConfig("Pulumi.dev.yaml");
    const nodes = dev["talos-cluster:nodes"] as Record<string, unknown>[];
    const more = [2, 3, 4].map((i) => ({
      name: `dev-cp-${i}`,
      address: `192.168.50.${10 + i}`,
      role: "controlplane",
      installDisk: "/dev/vda",
    }));
    const ws = new Workspace("even", { ...dev, "talos-cluster:nodes": [...nodes, ...more] });
    workspaces.push(ws);
    const preview = ws.must(["preview"]);
    expect(preview.output).toMatch(/warning: .*4 control planes/);
  });

  it("stops before any resource and lists every problem of a broken stack config", () => {
    const ws = new Workspace("broken", stackFileConfig("test/fixtures/Pulumi.broken.yaml"));
    workspaces.push(ws);
    const preview = ws.run(["preview"]);
    expect(preview.code).not.toBe(0);
    expect(preview.output).toContain("The stack config has 10 problems; nothing was created or changed:");
    expect(preview.output).toContain('talos-cluster:nodes[1] (cp-1).address: "10.20.0.300" is not an IPv4 address');
    expect(preview.output).not.toMatch(/talos:machine|talos:imagefactory/);
    // The message is the whole story: no stack trace of the program in the way.
    expect(preview.output).not.toMatch(/at .*lib\/config\//);
  });
});
