// `pulumi up --refresh` corrects what `preview --refresh` shows: a node upgraded and another
// re-configured behind the stack's back with the real talosctl (a client nobody here wrote) are
// brought back to the declared release and config by the Rollout, through its gates, and the next
// up changes nothing. Nodes, factory and control: SUITES.refresh (test/addresses.ts).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SUITES } from "../addresses";
import { controlPlaneFlags, describeEngine, type SimNodeConfig, Simulator, simNodes, simStackConfig, Workspace } from "./workspace";

const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT],
} = SUITES.refresh;

const STACK = "fix";
const ROOT = join(__dirname, "..", "..");
const TALOSCTL = process.env.TALOSCTL ?? join(ROOT, "node_modules", ".bin", "talosctl");
const INTEL_UCODE_SCHEMATIC = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8";

describeEngine(
  "up --refresh puts back nodes changed with talosctl",
  () => {
    let sim: Simulator;
    let ws: Workspace;
    let cp: SimNodeConfig;
    let worker: SimNodeConfig;
    let talosconfig: string;
    const talosctl = (node: SimNodeConfig, ...args: string[]) => {
      const r = spawnSync(TALOSCTL, ["--talosconfig", talosconfig, "-e", node.address, "-n", node.address, ...args], {
        encoding: "utf8",
        timeout: 180_000,
      });
      if (r.status !== 0) throw new Error(`talosctl ${args.join(" ")}: ${r.error?.message ?? ""}${r.stderr}`);
      return r.stdout;
    };

    beforeAll(async () => {
      const nodes = simNodes(NET, { controlPlanes: 1, workers: 1 });
      [cp, worker] = nodes as [SimNodeConfig, SimNodeConfig];
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        ["-reboot-time", "1s", "-factory-versions", "v1.11.5,v1.11.6", ...controlPlaneFlags()],
      );
      ws = new Workspace(STACK, simStackConfig(sim, STACK, nodes));
      ws.must(["up", "--yes"]);
      talosconfig = join(mkdtempSync(join(tmpdir(), "fix-")), "talosconfig");
      writeFileSync(talosconfig, ws.must(["stack", "output", "talosconfig", "--show-secrets"]).stdout, { mode: 0o600 });
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
    });

    it("brings the upgraded worker and the edited control plane back, then changes nothing", async () => {
      const factoryHost = new URL(sim.factoryUrl).host;
      talosctl(worker, "upgrade", "-i", `${factoryHost}/installer/${INTEL_UCODE_SCHEMATIC}:v1.11.6`, "--wait", "--timeout", "2m");
      talosctl(cp, "patch", "machineconfig", "--mode", "no-reboot", "-p", '{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}');
      expect((await sim.node(worker.address)).talosVersion).toBe("v1.11.6");
      expect((await sim.node(cp.address)).config).toContain("vm.max_map_count");

      // The preview names both; the up without refresh would leave them (its state is as declared).
      const preview = ws.run(["preview", "--refresh", "--diff"]);
      expect(preview.output).toMatch(/nodes\[1\]\.talosVersion|talosVersion\s*:\s*"v1\.11\.6"/);
      ws.must(["up", "--refresh", "--yes"]);
      expect((await sim.node(worker.address)).talosVersion).toBe("v1.11.5");
      expect((await sim.node(cp.address)).config).not.toContain("vm.max_map_count");
      const timeline = await sim.timeline();
      expect(timeline.some((e) => e.node === cp.address && e.event === "snapshot")).toBe(true);

      ws.must(["preview", "--refresh", "--expect-no-changes"]);
      ws.must(["up", "--yes", "--expect-no-changes"]);
    });

    it("still refreshes and rolls a change a year on, with the stored client certificate expired: the provider mints its own", async () => {
      // The talos plugin's stored os:admin certificate, replaced everywhere in the state by one
      // from the same Talos CA that ended yesterday (openssl ca: x509 cannot date a certificate back).
      const exported = ws.must(["stack", "export", "--show-secrets"]).stdout;
      const secretsResource = (
        JSON.parse(exported) as { deployment: { resources: { type: string; outputs?: Record<string, unknown> }[] } }
      ).deployment.resources.find((r) => r.type === "talos:machine/secrets:Secrets");
      const plain = (v: unknown): unknown => {
        if (v !== null && typeof v === "object" && "plaintext" in v)
          return plain(JSON.parse(String((v as { plaintext: string }).plaintext)));
        if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
        return v;
      };
      const outputs = plain(secretsResource?.outputs) as {
        clientConfiguration: { clientCertificate: string; clientKey: string };
        machineSecrets: { certs: { os: { cert: string; key: string } } };
      };
      const work = mkdtempSync(join(tmpdir(), "expired-"));
      const at = (name: string) => join(work, name);
      const pem = (b64: string) => Buffer.from(b64, "base64").toString();
      writeFileSync(at("ca.crt"), pem(outputs.machineSecrets.certs.os.cert));
      // Talos writes its Ed25519 keys as PKCS#8 under a label of its own.
      writeFileSync(at("ca.key"), pem(outputs.machineSecrets.certs.os.key).replaceAll("ED25519 PRIVATE KEY", "PRIVATE KEY"), {
        mode: 0o600,
      });
      writeFileSync(at("index.txt"), "");
      writeFileSync(at("serial"), "01\n");
      writeFileSync(
        at("ca.cnf"),
        `[ca]\ndefault_ca = d\n[d]\ndatabase = ${at("index.txt")}\nnew_certs_dir = ${work}\nserial = ${at("serial")}\ndefault_md = default\npolicy = p\n[p]\norganizationName = optional\n`,
      );
      const openssl = (...args: string[]) => {
        const r = spawnSync("openssl", args, { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
      };
      openssl("genpkey", "-algorithm", "ed25519", "-out", at("client.key"));
      openssl("req", "-new", "-key", at("client.key"), "-subj", "/O=os:admin", "-out", at("client.csr"));
      const yesterday = new Date(Date.now() - 86_400_000);
      const stamp = (d: Date) => `${d.toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
      openssl(
        "ca",
        "-config",
        at("ca.cnf"),
        "-batch",
        "-notext",
        "-in",
        at("client.csr"),
        "-cert",
        at("ca.crt"),
        "-keyfile",
        at("ca.key"),
        "-startdate",
        stamp(new Date(yesterday.getTime() - 365 * 86_400_000)),
        "-enddate",
        stamp(yesterday),
        "-out",
        at("client.crt"),
      );
      const expiredCert = Buffer.from(readFileSync(at("client.crt"))).toString("base64");
      const expiredKey = Buffer.from(readFileSync(at("client.key"), "utf8").replaceAll("PRIVATE KEY", "ED25519 PRIVATE KEY")).toString(
        "base64",
      );
      const stale = exported
        .replaceAll(outputs.clientConfiguration.clientCertificate, expiredCert)
        .replaceAll(outputs.clientConfiguration.clientKey, expiredKey);
      expect(stale).not.toBe(exported);
      writeFileSync(at("state.json"), stale);
      ws.must(["stack", "import", "--file", at("state.json")]);

      // What Talos says to the stored certificate now, through talosctl (a client nobody here wrote).
      const old = join(work, "talosconfig");
      writeFileSync(
        old,
        readFileSync(talosconfig, "utf8")
          .replace(/crt: \S+/, `crt: ${expiredCert}`)
          .replace(/key: \S+/, `key: ${expiredKey}`),
      );
      // Over TLS 1.3 talosctl may write before it reads the node's alert and see the node's close
      // ("broken pipe") instead: every try is refused, and one names the alert.
      const tries = Array.from({ length: 5 }, () =>
        spawnSync(TALOSCTL, ["--talosconfig", old, "-e", cp.address, "-n", cp.address, "version"], { encoding: "utf8", timeout: 60_000 }),
      );
      expect(tries.map((r) => r.status === 0)).toEqual(tries.map(() => false));
      expect(tries.map((r) => r.stderr).join("\n")).toContain("expired certificate");

      ws.must(["preview", "--refresh"]);
      const config = simStackConfig(sim, STACK, [
        cp,
        { ...worker, patches: [{ machine: { sysctls: { "net.core.somaxconn": "2048" } } }] } as SimNodeConfig,
      ]);
      ws.writeConfig(config);
      ws.must(["up", "--yes", "--skip-preview"]);
      expect((await sim.node(worker.address)).config).toContain("net.core.somaxconn");
      ws.must(["preview", "--refresh", "--expect-no-changes"]);
    });
  },
  { controlPlane: true },
);
