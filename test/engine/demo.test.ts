// `npm run demo` as a newcomer runs it, twice in a row: the up, the node list, the no-op second up
// and the drift the refresh finds, each visible in its output.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { DEFAULT_TALOS_VERSION } from "../../lib/versions";
import { BIN, describeEngine, ROOT } from "./workspace";

const demo = () => {
  const r = spawnSync(join(BIN, "vite-node"), [join(ROOT, "scripts", "demo.ts")], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status, output: `${r.stdout}\n${r.stderr}` };
};

describeEngine("npm run demo", () => {
  it("builds the demo cluster, shows what runs where, changes nothing on a second up and names a node changed by hand; twice in a row", () => {
    for (const run of [1, 2]) {
      const { code, output } = demo();
      expect(code, `run ${run}:\n${output}`).toBe(0);
      expect(output).toContain("+ 23 created");
      expect(output).toMatch(/cp-1\s+controlplane\s+127\.0\.77\.11\s+v1\.14\.1\s+2d61dd07b200\s+1\.37\.0/);
      expect(output).toMatch(/worker-2\s+worker\s+127\.0\.77\.22\s+v1\.14\.1/);
      expect(output).toContain("no changes: every resource is as declared");
      expect(output).toContain(`talosVersion: "v1.14.0" => "${DEFAULT_TALOS_VERSION}"`);
      expect(output).toContain("Simulator stopped.");
    }
  });
});
