// The policy pack run by the real engine (`pulumi preview --policy-pack policy`) on a local
// backend: the project's prod stack passes, and a program that breaks every rule is refused with
// each rule's message.
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEngine, ROOT, type RunResult, stackFileConfig, Workspace } from "./workspace";

// A file path: the engine runs it as the analyzer plugin (see policy/run-pack for why).
const POLICY = join(ROOT, "policy", "run-pack");

describeEngine("the policy pack in a real preview", () => {
  const workspaces: Workspace[] = [];
  let refused: RunResult;

  beforeAll(() => {
    const ws = new Workspace("prod", {}, join(ROOT, "test", "fixtures", "noncompliant"));
    workspaces.push(ws);
    refused = ws.run(["preview", "--policy-pack", POLICY]);
  });
  afterAll(() => {
    for (const w of workspaces) w.dispose();
  });

  for (const stack of ["dev", "prod"]) {
    it(`passes the project's ${stack} stack`, () => {
      const ws = new Workspace(stack, stackFileConfig(`Pulumi.${stack}.yaml`));
      workspaces.push(ws);
      const r = ws.must(["preview", "--policy-pack", POLICY]);
      expect(r.output).toContain("talos-cluster@v0.1.0");
      expect(r.output).not.toMatch(/mandatory|violation/i);
    });
  }

  it("refuses the plan", () => {
    expect(refused.code).not.toBe(0);
  });

  it("refuses a schematic without intel-ucode", () => {
    expect(refused.output).toContain("schematic no-intel-ucode lacks siderolabs/intel-ucode");
  });

  it("refuses unprotected machine secrets", () => {
    expect(refused.output).toContain("machine secrets unprotected-secrets must be protected (protect: true)");
  });

  it("refuses credentials outputs that are not secret", () => {
    expect(refused.output).toContain("unprotected-secrets must list machineSecrets, clientConfiguration in additionalSecretOutputs");
    expect(refused.output).toContain(
      "plain-kubeconfig must list kubernetesClientConfiguration, clientConfiguration in additionalSecretOutputs",
    );
    // The engine already counts the plugin's own secret output (machineConfiguration) as listed.
    expect(refused.output).toContain("foreign-installer must list clientConfiguration in additionalSecretOutputs");
  });

  it("refuses a node installing anything but the factory installer", () => {
    expect(refused.output).toContain(
      "foreign-installer installs ghcr.io/siderolabs/installer:v1.11.5, which is not an Image Factory installer",
    );
  });

  it("refuses the program's own cluster when it would install or upgrade to a stock installer", () => {
    // What the program declares that a first preview knows: each NodeState's image (the Rollout's
    // node list and the rendered configs are not known until the secrets exist).
    for (const node of ["cp-1", "cp-2", "cp-3"]) {
      expect(refused.output).toContain(
        `stock-installer-${node}-state installs ghcr.io/siderolabs/installer:v1.11.5, which is not an Image Factory installer`,
      );
    }
    // Unknown values (the rendered configs) are left out, not reported as a rule that cannot run.
    expect(refused.output).not.toContain("can't run policy");
  });

  it("refuses a prod stack with an even number of control planes", () => {
    expect(refused.output).toContain("two-control-planes has 2 control planes; a production stack needs an odd number, at least 3");
  });
});
