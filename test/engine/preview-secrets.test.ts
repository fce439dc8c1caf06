// What a pull request's preview prints, and so what its comment shows to everyone who can read the
// repository: the preview run as .github/workflows/pull-request.yml runs it (`--diff --refresh`,
// the policy pack, previews-only settings), on a running cluster with addons, after a changed
// cluster-wide patch, a changed addon value and a node edited by hand. Nothing in it may be a
// private key, a token, a bootstrap or encryption secret, in plain text or base64.
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADDON_DEFAULTS } from "../../lib/versions";
import { ChartRepo } from "../../scripts/chart-repo";
import { SUITES } from "../addresses";
import {
  controlPlaneFlags,
  describeEngine,
  ROOT,
  type RunResult,
  type SimNodeConfig,
  Simulator,
  simNodes,
  simStackConfig,
  Workspace,
} from "./workspace";

const STACK = "leak";
const {
  nets: [NET],
  ports: [FACTORY_PORT, CONTROL_PORT, CHART_PORT],
} = SUITES.previewSecrets;
const POLICY = join(ROOT, "policy", "run-pack");

type StateJson = null | boolean | number | string | StateJson[] | { [key: string]: StateJson };

// How a state export marks a secret value; with --show-secrets its `plaintext` is the value as JSON.
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Every string in a JSON value (a decrypted secret's too), with the path of keys that leads to it. */
function strings(value: StateJson, path: string[] = []): { path: string[]; value: string }[] {
  if (typeof value === "string") return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, [...path, String(i)]));
  if (typeof value !== "object" || value === null) return [];
  if (SECRET_SIG in value && typeof value.plaintext === "string") return strings(JSON.parse(value.plaintext) as StateJson, path);
  return Object.entries(value).flatMap(([k, v]) => strings(v, [...path, k]));
}

const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----/g;
const BASE64_RUN = /[A-Za-z0-9+/]{40,}={0,2}/g;
const decode = (b64: string) => Buffer.from(b64, "base64").toString("latin1");

/**
 * The secret values of a stack, read from its decrypted state: everything in the machine secrets
 * but certificates (bootstrap token, secretbox and aescbc keys, trustd token, cluster secret, every
 * CA's private key) and in the client configurations but certificates, and any private key inside
 * another value (the kubeconfig's, the talosconfig's), as PEM or base64-encoded PEM.
 */
function secretValues(state: StateJson): string[] {
  const found = new Set<string>();
  for (const { path, value } of strings(state)) {
    const key = path[path.length - 1] ?? "";
    const inSecrets = path.some((p) => /^(machineSecrets|clientConfiguration|kubernetesClientConfiguration)$/.test(p));
    if (inSecrets && !/^(id|crt|cert|caCertificate|clientCertificate|host)$/i.test(key) && value.length >= 16) found.add(value);
    for (const pem of value.match(PEM_PRIVATE_KEY) ?? []) found.add(pem);
    for (const run of value.match(BASE64_RUN) ?? []) {
      for (const pem of decode(run).match(PEM_PRIVATE_KEY) ?? []) {
        found.add(run);
        found.add(pem);
      }
    }
  }
  return [...found];
}

/** Where in `output` a secret shows, as it is, base64-encoded, or decoded from base64. */
function leaks(output: string, secrets: string[]): string[] {
  const found: string[] = [];
  const show = (what: string, at: number) => `${what}: …${output.slice(Math.max(0, at - 200), at + 60)}…`;
  for (const secret of secrets) {
    const forms = [secret, Buffer.from(secret).toString("base64"), ...(/^[A-Za-z0-9+/]+=*$/.test(secret) ? [decode(secret)] : [])];
    // A PEM block's first line of key material too, whatever its line breaks became.
    const body = /PRIVATE KEY-----\s*([A-Za-z0-9+/]{40,})/.exec(secret)?.[1];
    for (const form of [...forms, ...(body === undefined ? [] : [body])]) {
      const at = output.indexOf(form);
      if (form.length >= 16 && at >= 0) found.push(show(`a secret of the stack (${secret.slice(0, 6)}…)`, at));
    }
  }
  for (const m of output.matchAll(/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/g)) found.push(show("a PEM private key", m.index));
  for (const m of output.matchAll(BASE64_RUN)) {
    if (/PRIVATE KEY/.test(decode(m[0]))) found.push(show("a base64-encoded PEM private key", m.index));
  }
  // A Kubernetes bootstrap token: [a-z0-9]{6}.[a-z0-9]{16}.
  for (const m of output.matchAll(/\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g)) found.push(show("a bootstrap token", m.index));
  return found;
}

describeEngine(
  "a pull request's preview prints no secret",
  () => {
    let repo: ChartRepo;
    let sim: Simulator;
    let ws: Workspace;
    let nodes: SimNodeConfig[];
    let preview: RunResult;
    let secrets: string[];

    beforeAll(async () => {
      repo = await ChartRepo.start(
        CHART_PORT,
        [
          { name: ADDON_DEFAULTS.cilium.chart, versions: [ADDON_DEFAULTS.cilium.version] },
          { name: ADDON_DEFAULTS.metricsServer.chart, versions: [ADDON_DEFAULTS.metricsServer.version] },
        ],
        { versions: [ADDON_DEFAULTS.kubeletServingCertApprover.version], image: ADDON_DEFAULTS.kubeletServingCertApprover.image },
      );
      nodes = simNodes(NET, { controlPlanes: 1, workers: 1 });
      sim = await Simulator.start(
        nodes.map((n) => n.address),
        FACTORY_PORT,
        CONTROL_PORT,
        controlPlaneFlags(),
      );
      const addons = (approver: boolean) => ({
        cilium: { repository: repo.chartsUrl },
        kubeletServingCertApprover: { repository: repo.approverUrl, enabled: approver },
        metricsServer: { repository: repo.chartsUrl },
      });
      const config = { ...simStackConfig(sim, STACK, nodes), "talos-cluster:nodeTimeout": "60s", "talos-cluster:addons": addons(true) };
      ws = new Workspace(STACK, config);
      ws.must(["up", "--yes"]);

      // The pull request: a cluster-wide patch, and the approver off, which changes metrics-server's
      // values (it stops verifying kubelet certificates). Meanwhile someone edited the control plane.
      ws.writeConfig({
        ...config,
        "talos-cluster:patches": { all: [{ machine: { sysctls: { "vm.max_map_count": "262144" } } }] },
        "talos-cluster:addons": addons(false),
      });
      const [cp] = nodes as [SimNodeConfig];
      await sim.set(cp.address, { configPatch: "machine:\n  sysctls:\n    net.core.somaxconn: '4096'\n" });

      // As the workflow's preview job runs it.
      ws.env.PULUMI_SKIP_CHECKPOINTS = "true";
      ws.env.PULUMI_NODEJS_TRANSPILE_ONLY = "true";
      preview = ws.run(["preview", "--diff", "--refresh", "--policy-pack", POLICY]);
      secrets = secretValues(JSON.parse(ws.must(["stack", "export", "--show-secrets"]).stdout) as StateJson);
    });
    afterAll(() => {
      sim?.dispose();
      ws?.dispose();
      repo?.close();
    });

    it("shows the three changes, with the policy pack run", () => {
      expect(preview.code, preview.output).toBe(0);
      expect(preview.output).toContain("vm.max_map_count");
      expect(preview.output).toContain("net.core.somaxconn");
      // metrics-server's values: it stops verifying kubelet certificates.
      expect(preview.output).toContain(`kubernetes:helm.sh/v3:Release::${STACK}-metrics-server`);
      expect(preview.output).toContain("--kubelet-insecure-tls");
      // --diff lists the packs under this heading instead of "talos-cluster@v0.1.0".
      expect(preview.output).toContain("Policy Packs run:");
    });

    it("knows the stack's secrets, so the search below is a real one", () => {
      const machineSecrets = strings(JSON.parse(ws.must(["stack", "export", "--show-secrets"]).stdout) as StateJson).filter(({ path }) =>
        path.includes("machineSecrets"),
      );
      const named = (name: string) => machineSecrets.find(({ path }) => path[path.length - 1] === name)?.value ?? "";
      // Every one of these is in what the search covers.
      for (const name of ["bootstrapToken", "secretboxEncryptionSecret", "token", "secret"]) {
        expect(named(name).length, name).toBeGreaterThanOrEqual(16);
        expect(secrets).toContain(named(name));
      }
      expect(secrets.filter((s) => s.startsWith("-----BEGIN")).length).toBeGreaterThanOrEqual(4);
      // And the search finds them where they are.
      expect(leaks(`x ${named("bootstrapToken")} y`, secrets)).not.toEqual([]);
      expect(leaks(Buffer.from(named("secretboxEncryptionSecret")).toString("base64"), secrets)).not.toEqual([]);
    });

    it("prints none of them, in plain text or base64, on stdout or stderr", () => {
      expect(leaks(preview.output, secrets)).toEqual([]);
    });
  },
  { controlPlane: true },
);
