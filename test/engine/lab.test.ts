// The README's lab block, run as it is written on a fresh clone with a home of its own: from
// `npm run lab` to `kubectl get nodes` on simulated machines with a real etcd and kube-apiserver
// and the fixture charts (machines on 127.0.66.x, servers on 127.0.66.1:8080-8082), then
// `npm run lab -- down`.
import { execFileSync } from "node:child_process";
import { expect, it } from "vitest";
import { freshClone, readmeBlock, root, runScript } from "./readme";
import { describeEngine } from "./workspace";

describeEngine(
  "the README's lab block",
  () => {
    it("keeps what the lab writes out of git", () => {
      const paths = ["Pulumi.lab.yaml", ".lab/state", ".credentials/lab/kubeconfig"];
      // git check-ignore prints the paths given that are ignored.
      const ignored = execFileSync("git", ["check-ignore", ...paths], { cwd: root, encoding: "utf8" });
      expect(ignored.split("\n").filter(Boolean)).toEqual(paths);
    });

    it("goes from npm run lab to kubectl get nodes on a fresh clone: every declared node Ready, the spare machine not", () => {
      const clone = freshClone();
      let result: ReturnType<typeof runScript>;
      try {
        result = runScript(readmeBlock("lab"), clone, { pluginsHome: true, timeout: 300_000 });
      } finally {
        const down = runScript("npm run lab -- down", clone, { pluginsHome: true });
        expect(down.status, `${down.stdout}\n${down.stderr}`).toBe(0);
      }
      const output = `${result.stdout}\n${result.stderr}`;
      expect(result.status, output).toBe(0);
      expect(result.stdout).toContain("Pulumi.lab.yaml written");
      // The addons are on: Cilium and the rest installed from the fixture repository.
      expect(result.stdout).toMatch(/\+\s+kubernetes:helm.sh\/v3:Release\s+lab-cilium\s+created/);
      const table = result.stdout.split("\n").filter((l) => /^(cp|worker)-\d\s/.test(l));
      expect(table.map((l) => l.split(/\s+/).slice(0, 2).join(" "))).toEqual([
        "cp-1 Ready",
        "cp-2 Ready",
        "cp-3 Ready",
        "worker-1 Ready",
        "worker-2 Ready",
      ]);
    });
  },
  { controlPlane: true },
);
