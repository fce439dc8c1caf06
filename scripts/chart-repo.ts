// A local stand-in for the addons' chart repositories and the approver's manifest, for engine tests
// with the addons on and for the lab (npm run lab): the real charts cannot be downloaded here, and
// they would need controllers and containers the simulated cluster does not run. Every chart is a
// fixture (its description says which chart it stands in for) that renders one ConfigMap carrying
// the release's values as JSON, so a test reads back from the API server what the program gave Helm.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";

/** A chart the repository serves: one name, each of its versions. */
export interface FixtureChart {
  name: string;
  versions: string[];
}

/** The ConfigMap a fixture chart renders: `<chart>-fixture` in the release's namespace. */
export const fixtureConfigMap = (chart: string) => `${chart}-fixture`;

/** The approver manifest's fixture objects, in kube-system. */
export const APPROVER_FIXTURE = { configMap: "kubelet-serving-cert-approver-fixture", deployment: "kubelet-serving-cert-approver" };

const CONFIGMAP_TEMPLATE = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Chart.Name }}-fixture
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  chart: {{ .Chart.Name | quote }}
  version: {{ .Chart.Version | quote }}
  values.json: {{ toJson .Values | quote }}
`;

/** The approver's standalone-install.yaml at a version: objects that need no controller. */
function approverManifest(version: string, image: string): string {
  return `# Fixture standing in for kubelet-serving-cert-approver's standalone-install.yaml v${version}.
apiVersion: v1
kind: ConfigMap
metadata:
  name: ${APPROVER_FIXTURE.configMap}
  namespace: kube-system
data:
  fixture: "standing in for kubelet-serving-cert-approver"
  version: "${version}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${APPROVER_FIXTURE.deployment}
  namespace: kube-system
  annotations:
    # Test fixture only: the simulated cluster runs no controller manager and no kubelet, so this
    # Deployment never rolls out; skipAwait tells the Kubernetes provider not to wait for it.
    # Real manifests are never annotated so: their rollout is what the up waits for.
    pulumi.com/skipAwait: "true"
spec:
  replicas: 1
  selector:
    matchLabels: { app: kubelet-serving-cert-approver }
  template:
    metadata:
      labels: { app: kubelet-serving-cert-approver }
    spec:
      containers:
        # Upstream's manifest names a rolling tag; the program pins it to the chosen version.
        - name: cert-approver
          image: ${image}:main
`;
}

/**
 * Serves fixture charts (a Helm repository: index.yaml and .tgz files) and approver manifests from
 * a folder, through scripts/chart-server.mjs in a process of its own (the tests' own event
 * loop is blocked while the CLI runs).
 */
export class ChartRepo {
  private constructor(
    private readonly proc: ChildProcess,
    private readonly dir: string,
    readonly baseUrl: string,
  ) {}

  /** The Helm repository URL (`repository` of a chart addon). */
  get chartsUrl(): string {
    return `${this.baseUrl}/charts`;
  }

  /** The base the approver's `v<version>/deploy/standalone-install.yaml` is read from. */
  get approverUrl(): string {
    return `${this.baseUrl}/approver`;
  }

  /** Every request so far, in order: `GET /charts/index.yaml`, ... */
  get requests(): string[] {
    return readFileSync(join(this.dir, "requests.log"), "utf8")
      .split("\n")
      .filter((l) => l !== "");
  }

  /** The server's process id. */
  get pid(): number | undefined {
    return this.proc.pid;
  }

  /**
   * Builds the charts (with the system tar) and the approver manifests, and serves them on
   * <host>:<port> (host 127.0.0.1 unless told). `keep`: build into that folder and let the server
   * outlive this process (the lab), with its log there; otherwise a throwaway folder, and the
   * server dies with this process.
   */
  static async start(
    port: number,
    charts: FixtureChart[],
    approver: { versions: string[]; image: string },
    options: { host?: string; keep?: string } = {},
  ): Promise<ChartRepo> {
    const host = options.host ?? "127.0.0.1";
    const baseUrl = `http://${host}:${port}`;
    let dir: string;
    if (options.keep === undefined) dir = mkdtempSync(join(tmpdir(), "fixture-charts-"));
    else {
      dir = options.keep;
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
    }
    const root = join(dir, "www");
    mkdirSync(join(root, "charts"), { recursive: true });
    const entries: Record<string, unknown[]> = {};
    for (const chart of charts) {
      entries[chart.name] = chart.versions.map((version) => {
        const tgz = packChart(dir, chart.name, version);
        const file = `${chart.name}-${version}.tgz`;
        writeFileSync(join(root, "charts", file), tgz);
        return {
          ...chartMetadata(chart.name, version),
          urls: [`${baseUrl}/charts/${file}`],
          digest: createHash("sha256").update(tgz).digest("hex"),
          created: new Date(0).toISOString(),
        };
      });
    }
    writeFileSync(join(root, "charts", "index.yaml"), stringify({ apiVersion: "v1", entries, generated: new Date(0).toISOString() }));
    for (const version of approver.versions) {
      const folder = join(root, "approver", `v${version}`, "deploy");
      mkdirSync(folder, { recursive: true });
      writeFileSync(join(folder, "standalone-install.yaml"), approverManifest(version, approver.image));
    }

    const log = join(dir, "requests.log");
    const ready = join(dir, "ready");
    writeFileSync(log, "");
    const args = [join(__dirname, "chart-server.mjs"), root, host, String(port), log, ready];
    // stdin a pipe: the server exits when this process does; kept, it runs on its own.
    const proc =
      options.keep === undefined
        ? spawn(process.execPath, args, { stdio: ["pipe", "ignore", "pipe"] })
        : spawn(process.execPath, [...args, "--keep"], {
            stdio: ["ignore", "ignore", openSync(join(dir, "server.log"), "a")],
            detached: true,
          });
    if (options.keep !== undefined) proc.unref();
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const deadline = Date.now() + 10_000;
    while (!existsSync(ready)) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill();
        const log = options.keep === undefined ? stderr : readFileSync(join(dir, "server.log"), "utf8");
        throw new Error(`the fixture chart server did not start on ${baseUrl}: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return new ChartRepo(proc, dir, baseUrl);
  }

  close(): void {
    this.proc.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function chartMetadata(name: string, version: string): Record<string, unknown> {
  return {
    apiVersion: "v2",
    name,
    version,
    appVersion: version,
    type: "application",
    description: `Test fixture standing in for ${name}: renders only a ConfigMap with the release's values`,
  };
}

/** `<name>-<version>.tgz` as `helm package` lays it out: `<name>/Chart.yaml`, `values.yaml`, `templates/`. */
function packChart(work: string, name: string, version: string): Buffer {
  const root = join(work, `${name}-${version}`);
  mkdirSync(join(root, name, "templates"), { recursive: true });
  writeFileSync(join(root, name, "Chart.yaml"), stringify(chartMetadata(name, version)));
  // No defaults: the values the chart sees are exactly the ones the release gives it.
  writeFileSync(join(root, name, "values.yaml"), "{}\n");
  writeFileSync(join(root, name, "templates", "configmap.yaml"), CONFIGMAP_TEMPLATE);
  const out = join(work, `${name}-${version}.tgz`);
  const r = spawnSync("tar", ["-czf", out, "-C", root, "--owner=0", "--group=0", "--numeric-owner", name], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tar of the ${name} ${version} fixture chart failed: ${r.stderr}`);
  return readFileSync(out);
}
