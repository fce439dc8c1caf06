import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(__dirname, "..");
const validate = (...args: string[]) =>
  spawnSync("npx", ["vite-node", "scripts/validate-stack.ts", "--", ...args], { cwd: root, encoding: "utf8" });

describe("npm run validate", () => {
  it("accepts the committed stacks and exits 0", () => {
    const result = validate("dev", "prod");
    expect(result.stdout).toContain("dev: ok (1 control plane, 2 workers, Talos v1.14.1, Kubernetes 1.37.0)");
    expect(result.stdout).toContain("prod: ok (3 control planes, 4 workers, Talos v1.14.1, Kubernetes 1.34.1)");
    expect(result.status).toBe(0);
  });

  it("lists every problem of a broken stack file and exits 1", () => {
    const result = validate("test/fixtures/Pulumi.broken.yaml");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("The stack config has 10 problems; nothing was created or changed:");
    expect(result.stderr).toContain('  - talos-cluster:nodes[1] (cp-1).address: "10.20.0.300" is not an IPv4 address');
  });

  it("says which file it could not read", () => {
    const result = validate("staging");
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^staging: cannot read Pulumi\.staging\.yaml: ENOENT/m);
  });
});
