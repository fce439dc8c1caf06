// The loopback plan (test/addresses.ts) holds: no two suites share a net, a port or a file, and
// every loopback address, net and test port written in the test code (TypeScript and Go) is one its
// file's suite owns. Pure file reading.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { addressBase, SUITES, type Suite } from "./addresses";

const root = join(__dirname, "..");

// Fixed ports of the tests are in this band; a number in it in test code is a port.
const PORT_BAND = { first: 18000, last: 19999 };
// Go helpers whose first argument after t is the third octet of the nodes' addresses.
const GO_NET_HELPERS = ["newSim", "newSimWith", "newRealCluster"];

/** Test code: the TypeScript tests and the scripts that start simulators, the Go tests, the simulator, the Go test fixtures. */
function testCode(dir = root): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (["node_modules", "sdks", ".git", "bin"].includes(entry.name) || entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    const file = relative(root, path);
    if (entry.isDirectory()) found.push(...testCode(path));
    else if (/^(test|scripts)\/.*\.ts$/.test(file) && !/^test\/addresses(\.test)?\.ts$/.test(file)) found.push(file);
    else if (file.endsWith("_test.go") || /^test\/sim\/.*\.go$/.test(file) || /\/internal\/lab\/.*\.go$/.test(file)) found.push(file);
  }
  return found.sort();
}

const owns = (suite: Suite, file: string) => suite.files.some((f) => (f.endsWith("/") ? file.startsWith(f) : file === f));

/** Everything the plan refuses in these suites and files, one line each, naming the file and the fix. */
function addressFindings(suites: Record<string, Suite>, files: Record<string, string>): string[] {
  const findings: string[] = [];
  const entries = Object.entries(suites);
  for (const [kind, key] of [
    ["net", "nets"],
    ["port", "ports"],
    ["file", "files"],
  ] as const) {
    const owner = new Map<string, string>();
    for (const [name, suite] of entries) {
      for (const value of suite[key]) {
        const other = owner.get(String(value));
        if (other !== undefined) findings.push(`${kind} ${value}: both ${other} and ${name} have it; give one of them another`);
        owner.set(String(value), name);
      }
    }
  }
  for (const [file, text] of Object.entries(files)) {
    const [name, suite] = entries.find(([, s]) => owns(s, file)) ?? [];
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      const at = `${file}:${i + 1}`;
      const nets: number[] = [];
      for (const m of line.matchAll(/(?<![\d.])127\.(\d+)\.(\d+)\.\d+/g)) {
        if (m[1] !== "0") findings.push(`${at}: ${m[0]}: write 127.0.x.x (the base moves with TALOS_TEST_ADDRESS_BASE through netPrefix)`);
        if (m[2] !== "0") nets.push(Number(m[2]));
      }
      for (const helper of GO_NET_HELPERS) {
        for (const m of line.matchAll(new RegExp(`\\b${helper}\\(t, (\\d+)\\b`, "g"))) nets.push(Number(m[1]));
      }
      if (file.endsWith(".ts")) {
        for (const m of line.matchAll(/\bsimNodes\((\d+)\b/g)) {
          findings.push(`${at}: simNodes(${m[1]}): take the net from SUITES in test/addresses.ts`);
        }
      }
      for (const net of nets) {
        if (suite === undefined) findings.push(`${at}: 127.0.${net}.x in a file no suite of test/addresses.ts owns: add it to one`);
        else if (!suite.nets.includes(net))
          findings.push(
            `${at}: 127.0.${net}.x is not ${name}'s (nets ${suite.nets.join(", ")}): take one of them, or give ${name} a new one in test/addresses.ts`,
          );
      }
      for (const m of line.matchAll(/(?<![\d._])(1[89]\d{3})(?![\d_])/g)) {
        const port = Number(m[1]);
        if (port < PORT_BAND.first || port > PORT_BAND.last) continue;
        if (suite === undefined) findings.push(`${at}: port ${port} in a file no suite of test/addresses.ts owns: add it to one`);
        else if (!suite.ports.includes(port))
          findings.push(`${at}: port ${port} is not ${name}'s: take it from SUITES.${name} in test/addresses.ts`);
      }
    });
  }
  return findings;
}

describe("the loopback plan's rules", () => {
  it("refuse a net, port or file two suites share, and an address, net helper or port that is not the file's suite's", () => {
    const suites: Record<string, Suite> = {
      a: { files: ["test/engine/a.test.ts"], nets: [1, 2], ports: [18100], moves: true },
      b: { files: ["talosnode/b/"], nets: [2], ports: [18100], moves: false },
      c: { files: ["test/engine/a.test.ts"], nets: [3], ports: [], moves: true },
    };
    const findings = addressFindings(suites, {
      "test/engine/a.test.ts":
        'const x = "127.0.1.5"; simNodes(1, {}); start(18100, 18101);\nconst y = "127.0.0.1"; const z = "127.2.1.1";',
      "talosnode/b/b_test.go": 's := newSim(t, 4, 1, 0)\naddr := "127.0.2.11"',
      "talosnode/c/c_test.go": 'addr := "127.0.9.1:18200"',
    });
    expect(findings).toEqual([
      "net 2: both a and b have it; give one of them another",
      "port 18100: both a and b have it; give one of them another",
      "file test/engine/a.test.ts: both a and c have it; give one of them another",
      "test/engine/a.test.ts:1: simNodes(1): take the net from SUITES in test/addresses.ts",
      "test/engine/a.test.ts:1: port 18101 is not a's: take it from SUITES.a in test/addresses.ts",
      "test/engine/a.test.ts:2: 127.2.1.1: write 127.0.x.x (the base moves with TALOS_TEST_ADDRESS_BASE through netPrefix)",
      "talosnode/b/b_test.go:1: 127.0.4.x is not b's (nets 2): take one of them, or give b a new one in test/addresses.ts",
      "talosnode/c/c_test.go:1: 127.0.9.x in a file no suite of test/addresses.ts owns: add it to one",
      "talosnode/c/c_test.go:1: port 18200 in a file no suite of test/addresses.ts owns: add it to one",
    ]);
  });

  it("take the base from TALOS_TEST_ADDRESS_BASE, refusing anything but 0-255", () => {
    expect(addressBase(undefined)).toBe(0);
    expect(addressBase("")).toBe(0);
    expect(addressBase("7")).toBe(7);
    expect(() => addressBase("256")).toThrow(/TALOS_TEST_ADDRESS_BASE="256": must be a whole number from 0 to 255/);
    expect(() => addressBase("x")).toThrow(/TALOS_TEST_ADDRESS_BASE="x"/);
  });
});

describe("the loopback plan", () => {
  const files = testCode();

  it("covers the TypeScript and Go suites", () => {
    expect(files).toContain("test/engine/e2e.test.ts");
    expect(files).toContain("talosnode/provider/provider_test.go");
    expect(files).toContain("test/sim/node/upgrade_test.go");
    for (const [name, suite] of Object.entries(SUITES)) {
      for (const f of suite.files)
        expect(
          files.some((file) => (f.endsWith("/") ? file.startsWith(f) : file === f)),
          `${name}: ${f}`,
        ).toBe(true);
    }
  });

  it("gives every suite nets and ports of its own, and every address in the test code is its file's suite's", () => {
    const texts = Object.fromEntries(files.map((file) => [file, readFileSync(join(root, file), "utf8")]));
    expect(addressFindings(SUITES, texts)).toEqual([]);
  });
});

describe("the base .ci/run takes (scripts/test-address-base.sh)", () => {
  // A shell that sources the script, prints the base it took and holds it until its stdin closes.
  const script = 'source scripts/test-address-base.sh && echo "$TALOS_TEST_ADDRESS_BASE" && read -r _ || true';
  const env = (dir: string, extra: Record<string, string> = {}) => {
    const { TALOS_TEST_ADDRESS_BASE: _, ...rest } = process.env;
    return { ...rest, TMPDIR: dir, ...extra };
  };
  const once = (dir: string, extra: Record<string, string> = {}) =>
    spawnSync("bash", ["-c", script], { cwd: root, env: env(dir, extra), input: "", encoding: "utf8" }).stdout.trim();

  it("is one no other run holds, free again when that run ends, and the one set by hand if any", async () => {
    const dir = mkdtempSync(join(tmpdir(), "address-base-"));
    try {
      const holder = spawn("bash", ["-c", script], { cwd: root, env: env(dir), stdio: ["pipe", "pipe", "inherit"] });
      const held = await new Promise<string>((resolve) => holder.stdout.once("data", (d: Buffer) => resolve(d.toString().trim())));
      expect(held).toBe("1");
      expect(once(dir)).toBe("2");
      holder.stdin.end();
      await new Promise((resolve) => holder.once("exit", resolve));
      expect(once(dir)).toBe("1");
      expect(once(dir, { TALOS_TEST_ADDRESS_BASE: "9" })).toBe("9");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
