// The README's marked blocks (`<!-- readme-block: name -->`), run as they are written on a copy of
// the checkout (a fresh clone: the tracked files, then setup's node_modules) with a home of its own.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";

export const root = join(__dirname, "..", "..");

/** The fenced block after `<!-- readme-block: name -->` in the README. */
export function readmeBlock(name: string, readme = readFileSync(join(root, "README.md"), "utf8")): string {
  const match = new RegExp(`<!-- readme-block: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (match?.[1] === undefined) throw new Error(`README has no block "${name}"`);
  return match[1];
}

/** A fresh clone of the checkout in a temporary folder: the tracked files, then the setup's node_modules. */
export function freshClone(): string {
  const clone = mkdtempSync(join(tmpdir(), "readme-"));
  const tracked = execFileSync("git", ["ls-files", "-z"], { cwd: root, encoding: "utf8" }).split("\0").filter(Boolean);
  for (const file of tracked) {
    mkdirSync(dirname(join(clone, file)), { recursive: true });
    copyFileSync(join(root, file), join(clone, file));
  }
  symlinkSync(join(root, "node_modules"), join(clone, "node_modules"));
  return clone;
}

/**
 * Runs a script with bash -euo pipefail in `cwd`, with a new home and no backend or token from
 * this machine. `pluginsHome`: keep the machine's PULUMI_HOME (its installed plugins), for blocks
 * that deploy; otherwise the new home has its own.
 */
export function runScript(script: string, cwd: string, options: { pluginsHome?: boolean; timeout?: number } = {}) {
  const home = mkdtempSync(join(tmpdir(), "readme-home-"));
  const {
    PULUMI_BACKEND_URL: _backend,
    PULUMI_ACCESS_TOKEN: _token,
    PULUMI_CONFIG_PASSPHRASE: _passphrase,
    KUBECONFIG: _kubeconfig,
    TALOSCONFIG: _talosconfig,
    XDG_STATE_HOME: _state,
    ...env
  } = process.env;
  const pulumiHome = options.pluginsHome ? (process.env.PULUMI_HOME ?? join(homedir(), ".pulumi")) : join(home, ".pulumi");
  return spawnSync("bash", ["-euo", "pipefail", "-c", script], {
    cwd,
    encoding: "utf8",
    env: { ...env, HOME: home, PULUMI_HOME: pulumiHome, PULUMI_SKIP_UPDATE_CHECK: "true", NO_COLOR: "1" },
    timeout: options.timeout ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}
