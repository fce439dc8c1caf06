// The README's local-backend block, run as it is written on a copy of the checkout with a home of
// its own: on a fresh clone its commands must work in order, with no account and no token.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { expect, it } from "vitest";
import { describeEngine } from "./workspace";

const root = join(__dirname, "..", "..");

/** The fenced block after `<!-- readme-block: name -->` in the README. */
export function readmeBlock(readme: string, name: string): string {
  const match = new RegExp(`<!-- readme-block: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (match?.[1] === undefined) throw new Error(`README has no block "${name}"`);
  return match[1];
}

describeEngine("the README's local backend block", () => {
  it("logs in to a new folder, makes a stack and lists it, on a fresh clone", () => {
    const clone = mkdtempSync(join(tmpdir(), "readme-"));
    // A fresh clone: the tracked files only, then the setup's node_modules.
    const tracked = execFileSync("git", ["ls-files", "-z"], { cwd: root, encoding: "utf8" }).split("\0").filter(Boolean);
    for (const file of tracked) {
      mkdirSync(dirname(join(clone, file)), { recursive: true });
      copyFileSync(join(root, file), join(clone, file));
    }
    symlinkSync(join(root, "node_modules"), join(clone, "node_modules"));
    const home = mkdtempSync(join(tmpdir(), "readme-home-"));
    const block = readmeBlock(readFileSync(join(root, "README.md"), "utf8"), "local-backend");
    const { PULUMI_BACKEND_URL: _backend, PULUMI_ACCESS_TOKEN: _token, ...env } = process.env;
    const result = spawnSync("bash", ["-euo", "pipefail", "-c", block], {
      cwd: clone,
      encoding: "utf8",
      env: { ...env, HOME: home, PULUMI_HOME: join(home, ".pulumi"), PULUMI_SKIP_UPDATE_CHECK: "true" },
      timeout: 120_000,
    });
    expect(result.stderr).not.toMatch(/PULUMI_ACCESS_TOKEN|no such file or directory/);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^dev\*?\s/m);
  });
});
