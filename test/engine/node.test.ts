// The Node.js the Pulumi language host runs the program on: the `node` it finds on PATH, which must
// be one package.json's engines accept (in CI, exactly .nvmrc's), as `pulumi about` reports it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { describeEngine, PULUMI, ROOT } from "./workspace";

describeEngine("the language host's Node.js", () => {
  it("is a supported one", () => {
    const backend = mkdtempSync(join(tmpdir(), "node-about-"));
    const { PULUMI_ACCESS_TOKEN: _token, ...env } = process.env;
    const r = spawnSync(PULUMI, ["about", "--json"], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...env, PULUMI_BACKEND_URL: `file://${backend}`, PULUMI_SKIP_UPDATE_CHECK: "true" },
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const runtime = (JSON.parse(r.stdout) as { runtime?: { language?: string; version?: string; executable?: string } }).runtime;
    expect(runtime?.language).toBe("nodejs");
    const engines = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string } }).engines.node;
    const min = Number(/^>=(\d+)$/.exec(engines)?.[1]);
    const version = runtime?.version ?? "";
    expect(Number(/^v(\d+)\./.exec(version)?.[1]), `${runtime?.executable} ${version}`).toBeGreaterThanOrEqual(min);
    if (process.env.CI === "true") {
      expect(version).toBe(`v${readFileSync(join(ROOT, ".nvmrc"), "utf8").trim()}`);
    }
  });
});
