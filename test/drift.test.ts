import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TYPES } from "../lib/tokens";
import { driftVerdict, verdictLine } from "../scripts/drift-verdict";

const urn = (type: string, name: string) => `urn:pulumi:prod::talos-cluster::talos-cluster:index:TalosCluster$${type}::${name}`;

describe("drift verdict", () => {
  it("reports no drift when every step is same, read or an unchanged refresh", () => {
    const v = driftVerdict("prod", {
      steps: [
        { op: "same", urn: urn(TYPES.secrets, "prod-secrets") },
        { op: "refresh", urn: urn(TYPES.secrets, "prod-secrets"), detailedDiff: {} },
        { op: "read", urn: urn(TYPES.schematic, "prod-schematic") },
      ],
    });
    expect(verdictLine(v)).toBe("prod: no drift");
  });

  it("names each changed resource with its operation and the properties behind it", () => {
    const v = driftVerdict("prod", {
      steps: [
        { op: "update", urn: urn(TYPES.nodeState, "prod-cp-1-state"), diffReasons: ["talosVersion"] },
        { op: "same", urn: urn(TYPES.secrets, "prod-secrets") },
        { op: "replace", urn: urn(TYPES.bootstrap, "prod-bootstrap"), replaceReasons: ["node"] },
      ],
    });
    expect(verdictLine(v)).toBe(
      "prod: drift: 2 resources: replace talos:machine/bootstrap:Bootstrap::prod-bootstrap (node); " +
        "update talosnode:index:NodeState::prod-cp-1-state (talosVersion)",
    );
  });

  it("prints the same line for the same drift whatever order the engine reported it in", () => {
    const steps = [
      { op: "update", urn: urn(TYPES.nodeState, "prod-cp-2-state"), diffReasons: ["talosVersion", "config"] },
      { op: "update", urn: urn(TYPES.nodeState, "prod-cp-1-state"), diffReasons: ["schematicId"] },
    ];
    const line = verdictLine(driftVerdict("prod", { steps }));
    expect(verdictLine(driftVerdict("prod", { steps: [...steps].reverse() }))).toBe(line);
    expect(line).toBe(
      "prod: drift: 2 resources: update talosnode:index:NodeState::prod-cp-1-state (schematicId); " +
        "update talosnode:index:NodeState::prod-cp-2-state (config, talosVersion)",
    );
  });

  it("counts a refresh that found changed state as drift", () => {
    const v = driftVerdict("dev", {
      steps: [{ op: "refresh", urn: urn("kubernetes:helm.sh/v3:Release", "dev-cilium"), detailedDiff: { version: { kind: "update" } } }],
    });
    expect(v.drifted).toEqual([{ op: "refresh", resource: "kubernetes:helm.sh/v3:Release::dev-cilium", properties: ["version"] }]);
  });

  it("counts resources to create or delete as drift", () => {
    const v = driftVerdict("dev", {
      steps: [
        { op: "create", urn: urn(TYPES.configApply, "dev-worker-3") },
        { op: "delete", urn: urn(TYPES.configApply, "dev-worker-9") },
      ],
    });
    expect(v.drifted.map((d) => d.op)).toEqual(["create", "delete"]);
  });
});

describe("npm run drift", () => {
  // A stand-in for the CLI that prints a canned preview digest: exercises the command's exit codes
  // and output, not the engine (engine tests need the toolchain; see docs/toolchain.md).
  function fakePulumi(digests: Record<string, unknown>, exitCode = 0, credentials: Record<string, unknown> = {}): string {
    const dir = mkdtempSync(join(tmpdir(), "drift-"));
    const bin = join(dir, "pulumi");
    writeFileSync(
      bin,
      `#!/usr/bin/env node\nconst d=${JSON.stringify(digests)};const c=${JSON.stringify(credentials)};` +
        `const s=process.argv[process.argv.indexOf("--stack")+1];` +
        // `pulumi stack output credentials --json`: the stack's output, or the CLI's refusal when it has none.
        `if(process.argv[2]==="stack"){if(c[s]===undefined){process.stderr.write("error: current stack does not have output property");process.exit(255)}` +
        `process.stdout.write(JSON.stringify(c[s]));process.exit(0)}` +
        `process.stdout.write(JSON.stringify(d[s]??{}));process.exit(${exitCode});\n`,
    );
    chmodSync(bin, 0o755);
    return bin;
  }
  const run = (bin: string, ...args: string[]) =>
    spawnSync("npx", ["vite-node", "scripts/drift.ts", "--", ...args], {
      cwd: join(__dirname, ".."),
      encoding: "utf8",
      env: { ...process.env, PULUMI_BIN: bin },
    });

  it("prints one verdict per stack and exits 1 when any stack drifted", () => {
    const bin = fakePulumi({
      dev: { steps: [{ op: "same", urn: urn(TYPES.secrets, "dev-secrets") }] },
      prod: {
        steps: [{ op: "update", urn: urn(TYPES.nodeState, "prod-cp-2-state"), diffReasons: ["talosVersion"] }],
      },
    });
    const result = run(bin, "-s", "dev", "-s", "prod");
    expect(result.stdout.trim().split("\n")).toEqual([
      "dev: no drift",
      "prod: drift: 1 resource: update talosnode:index:NodeState::prod-cp-2-state (talosVersion)",
    ]);
    expect(result.status).toBe(1);
  });

  it("exits 0 when no stack drifted", () => {
    const result = run(fakePulumi({ dev: { steps: [] } }), "-s", "dev");
    expect(result.stdout.trim()).toBe("dev: no drift");
    expect(result.status).toBe(0);
  });

  it("fails naming each certificate with 30 days or fewer left, soonest first, even without drift", () => {
    const inDays = (days: number) => new Date(Date.now() + days * 86_400_000 + 3_600_000).toISOString();
    const bin = fakePulumi({ dev: { steps: [] }, prod: { steps: [] } }, 0, {
      dev: [
        { name: "talosconfig client certificate", subject: "O=os:admin", notAfter: inDays(365), daysLeft: 365 },
        { name: "Talos CA", subject: "O=talos", notAfter: inDays(3650), daysLeft: 3650 },
      ],
      // daysLeft is what the last up saw; the check reads notAfter against today.
      prod: [
        { name: "talosconfig client certificate", subject: "O=os:admin", notAfter: inDays(29), daysLeft: 200 },
        { name: "kubeconfig client certificate", subject: "O=system:masters", notAfter: inDays(-2), daysLeft: 1 },
        { name: "Talos CA", subject: "O=talos", notAfter: inDays(3650), daysLeft: 3650 },
      ],
    });
    const result = run(bin, "-s", "dev", "-s", "prod");
    const day = (days: number) => inDays(days).slice(0, 10);
    expect(result.stdout.trim().split("\n")).toEqual([
      "dev: no drift",
      "prod: no drift",
      `prod: credentials: kubeconfig client certificate expired on ${day(-2)}: see docs/operations.md, Credentials`,
      `prod: credentials: talosconfig client certificate expires on ${day(29)}, in 29 days: see docs/operations.md, Credentials`,
    ]);
    expect(result.status).toBe(1);
  });

  it("exits 2 and says so when the preview itself fails", () => {
    const bin = fakePulumi({ dev: { diagnostics: [{ severity: "error", message: "stack 'dev' not found" }] } }, 255);
    const result = run(bin, "-s", "dev");
    expect(result.stdout.trim()).toBe("dev: preview failed: stack 'dev' not found");
    expect(result.status).toBe(2);
  });
});
