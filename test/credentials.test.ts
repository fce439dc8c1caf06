import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { credentialsDir, writeCredentials } from "../scripts/credentials-files";

const root = join(__dirname, "..");
const mode = (path: string) => statSync(path).mode & 0o777;

describe("npm run credentials", () => {
  it("writes the talosconfig and kubeconfig owner-only into the stack's git-ignored folder", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "creds-")), credentialsDir("dev"));
    const written = writeCredentials(dir, { talosconfig: "context: dev\n", kubeconfig: "apiVersion: v1\n", nodes: [] });
    expect(written).toEqual([join(dir, "talosconfig"), join(dir, "kubeconfig")]);
    expect(readFileSync(join(dir, "kubeconfig"), "utf8")).toBe("apiVersion: v1\n");
    expect([mode(dir), ...written.map(mode)]).toEqual([0o700, 0o600, 0o600]);
    expect(credentialsDir("dev")).toBe(join(".credentials", "dev"));
    for (const file of [join(credentialsDir("dev"), "kubeconfig"), "kubeconfig", "talosconfig"]) {
      expect(spawnSync("git", ["check-ignore", "-q", file], { cwd: root }).status, `${file} is not git-ignored`).toBe(0);
    }
  });

  it("tightens a file that already exists with a looser mode", () => {
    const dir = mkdtempSync(join(tmpdir(), "creds-"));
    writeFileSync(join(dir, "kubeconfig"), "old", { mode: 0o644 });
    writeCredentials(dir, { talosconfig: "t", kubeconfig: "k" });
    expect(mode(join(dir, "kubeconfig"))).toBe(0o600);
  });

  it("refuses a stack that has no credentials yet, naming the missing outputs and writing nothing", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "creds-")), "dev");
    expect(() => writeCredentials(dir, { talosconfig: "t" })).toThrow(
      "the stack has no kubeconfig output yet: run `npm run pulumi -- up -s <stack>` first",
    );
    expect(existsSync(dir)).toBe(false);
  });
});

describe("npm run pulumi", () => {
  /**
   * A checkout holding only the wrapper and the Node.js pins, and a CLI stand-in that prints its
   * arguments (or the `node` it would run programs on) when given.
   */
  function checkout(withCli: boolean, cli = '#!/bin/sh\necho "cli $*"\n'): string {
    const dir = mkdtempSync(join(tmpdir(), "wrapper-"));
    mkdirSync(join(dir, "scripts"));
    for (const file of ["scripts/pulumi.sh", "scripts/node.sh", "package.json", ".nvmrc"]) copyFileSync(join(root, file), join(dir, file));
    if (withCli) {
      mkdirSync(join(dir, "node_modules", ".bin"), { recursive: true });
      writeFileSync(join(dir, "node_modules", ".bin", "pulumi"), cli, { mode: 0o755 });
    }
    return dir;
  }
  const run = (dir: string, args: string[], env: Record<string, string> = {}) =>
    spawnSync("bash", [join(dir, "scripts", "pulumi.sh"), ...args], { encoding: "utf8", env: { ...process.env, ...env } });

  it("says to run setup first when the toolchain is missing, instead of fetching another CLI", () => {
    const result = run(checkout(false), ["up"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("run `npm run setup` first");
  });

  it("makes a local backend's folder before login, and passes every argument on", () => {
    const dir = checkout(true);
    const state = join(dir, ".pulumi-state");
    const result = run(dir, ["login", `file://${state}`]);
    expect(result.stdout.trim()).toBe(`cli login file://${state}`);
    expect(existsSync(state)).toBe(true);
    const viaEnv = join(dir, "other-state");
    expect(run(dir, ["stack", "ls"], { PULUMI_BACKEND_URL: `file://${viaEnv}` }).status).toBe(0);
    expect(existsSync(viaEnv)).toBe(true);
  });

  it("runs the CLI, and so the programs its language host starts, on the Node.js setup installed when PATH's is too old", () => {
    const dir = checkout(true, "#!/bin/sh\nnode --version\n");
    const pinned = readFileSync(join(root, ".nvmrc"), "utf8").trim();
    const bin = mkdtempSync(join(tmpdir(), "wrapper-bin-"));
    writeFileSync(join(bin, "node"), "#!/bin/sh\necho v20.20.2\n", { mode: 0o755 });
    const cache = mkdtempSync(join(tmpdir(), "wrapper-cache-"));
    const env = { PATH: `${bin}:/usr/bin:/bin`, XDG_CACHE_HOME: cache };
    const before = run(dir, ["version"], env);
    expect(before.status).toBe(1);
    expect(before.stderr).toContain(`Node.js v${pinned} (.nvmrc) is not installed: run \`npm run setup\``);
    const installed = join(cache, "talos-cluster", `node-v${pinned}`, "bin");
    mkdirSync(installed, { recursive: true });
    writeFileSync(join(installed, "node"), `#!/bin/sh\necho v${pinned}\n`, { mode: 0o755 });
    const after = run(dir, ["version"], env);
    expect(after.stderr).toBe("");
    expect(after.stdout).toBe(`v${pinned}\n`);
  });
});
