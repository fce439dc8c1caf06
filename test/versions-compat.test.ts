import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VALIDATOR_BIN } from "../lib/validate";
import {
  DEFAULT_KUBERNETES_VERSION,
  DEFAULT_TALOS_VERSION,
  KUBERNETES_SUPPORT,
  talosMinor,
  UPGRADE_FROM,
  upgradeRefusal,
} from "../lib/versions";

/** What `talosvalidate -support` prints: Talos' config library's compatibility data per minor. */
interface Support {
  library: string;
  releases: {
    talos: string;
    kubernetes: { min: string; max: string; minMinor: string; maxMinor: string };
    upgradeFrom: string;
    downgradeFromBelow: string;
    deniedUpgradeFrom: string[];
  }[];
}

/**
 * The validator setup built; a binary from before `-support` existed (setup not re-run) falls
 * back to building it from source, with setup's flags so Go's build cache is shared.
 */
function support(): Support {
  const linked = spawnSync(VALIDATOR_BIN, ["-support"], { input: "", encoding: "utf8" });
  const run =
    linked.status === 0
      ? linked
      : spawnSync("go", ["run", "-trimpath", "./cmd/talosvalidate", "-support"], {
          cwd: join(__dirname, "..", "talosvalidate"),
          encoding: "utf8",
          env: { ...process.env, GONOSUMDB: [process.env.GONOSUMDB, "github.com/siderolabs"].filter(Boolean).join(",") },
        });
  if (run.status !== 0) throw new Error(`talosvalidate -support failed (exit ${run.status}): ${run.stderr.trim() || run.error?.message}`);
  return JSON.parse(run.stdout) as Support;
}

const minorOf = (v: string) => v.split(".").slice(0, 2).join(".");
const minorNumber = (v: string) => Number(v.split(".")[1]);

describe("the Kubernetes support table against Talos' config library", () => {
  const data = support();
  const byMinor = new Map(data.releases.map((r) => [r.talos, r]));

  it("comes from the library the project's Go code builds on", () => {
    expect(data.library).toMatch(/^v1\.\d+\.\d+$/);
    // A row per minor from 1.7, in order: a copied line naming the wrong package would show here.
    expect(data.releases.map((r) => r.talos)).toEqual(data.releases.map((_, i) => `1.${7 + i}`));
  });

  it("has, for every Talos minor the project accepts, the range the library states", () => {
    const table = Object.fromEntries(Object.keys(KUBERNETES_SUPPORT).map((m) => [m, KUBERNETES_SUPPORT[m]]));
    const library = Object.fromEntries(
      Object.keys(KUBERNETES_SUPPORT).map((m) => {
        const row = byMinor.get(m);
        return [m, row === undefined ? "not in the library" : { min: row.kubernetes.minMinor, max: row.kubernetes.maxMinor }];
      }),
    );
    // When this fails, correct lib/versions.ts KUBERNETES_SUPPORT to the library's figures.
    expect(table).toEqual(library);
  });

  it("states max as the newest minor's highest patch, which the table's minors stand for", () => {
    for (const m of Object.keys(KUBERNETES_SUPPORT)) {
      const row = byMinor.get(m);
      expect(row?.kubernetes.max, `Talos ${m}`).toBe(`${row?.kubernetes.maxMinor}.99`);
      expect(row?.kubernetes.min, `Talos ${m}`).toBe(`${row?.kubernetes.minMinor}.0`);
    }
  });

  it("gives new stacks the release of the library that renders and validates their configs", () => {
    expect(DEFAULT_TALOS_VERSION).toBe(data.library);
  });

  it("puts the default Kubernetes release inside the default Talos release's range", () => {
    const row = byMinor.get(talosMinor(DEFAULT_TALOS_VERSION) ?? "");
    expect(row, DEFAULT_TALOS_VERSION).toBeDefined();
    const k = minorNumber(minorOf(DEFAULT_KUBERNETES_VERSION));
    expect(k).toBeGreaterThanOrEqual(minorNumber(row?.kubernetes.minMinor ?? "1.999"));
    expect(k).toBeLessThanOrEqual(minorNumber(row?.kubernetes.maxMinor ?? "1.0"));
  });

  it("has the oldest release each minor installs over, as the library states, with no denied sources", () => {
    // When this fails, correct lib/versions.ts UPGRADE_FROM to the library's figures.
    expect(UPGRADE_FROM).toEqual(Object.fromEntries(data.releases.map((r) => [r.talos, r.upgradeFrom])));
    // A denied source would need its own rule in upgradeRefusal.
    expect(data.releases.flatMap((r) => r.deniedUpgradeFrom)).toEqual([]);
  });

  it("refuses the upgrades the library refuses", () => {
    expect(upgradeRefusal("v1.11.5", "v1.14.1")).toBe("Talos 1.14 installs only over 1.12.0 or later, and v1.11.5 is older");
    expect(upgradeRefusal("v1.12.0", "v1.14.1")).toBeUndefined();
    expect(upgradeRefusal("v1.11.5", "v1.13.9")).toBeUndefined();
  });
});

describe("one Talos library", () => {
  const root = join(__dirname, "..");
  const env = readFileSync(join(root, "scripts", "toolchain.env"), "utf8");
  const value = (key: string) => new RegExp(`^${key}="?([^"\\n]*)"?$`, "m").exec(env)?.[1] ?? "";

  it("is the one every module that renders, validates, reads or simulates a config requires, and the validator reports", () => {
    const version = value("TALOS_LIBRARY_VERSION");
    const modules = value("TALOS_LIBRARY_MODULES").split(" ");
    expect(modules).toEqual(expect.arrayContaining(["talosnode", "talosvalidate", "test/sim"]));
    const required = Object.fromEntries(
      modules.map((m) => [
        m,
        /^\s+github\.com\/siderolabs\/talos\/pkg\/machinery (v\S+)/m.exec(readFileSync(join(root, m, "go.mod"), "utf8"))?.[1],
      ]),
    );
    expect(required).toEqual(Object.fromEntries(modules.map((m) => [m, `v${version}`])));
    expect(support().library).toBe(`v${version}`);
  });
});
