// The whole stack under Pulumi mocks: what the plan holds, with which inputs, in which order.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deployCluster, recoverySnapshot, type StackOutputs, snapshotFolder } from "../components/program";
import { ConfigError, parseConfig } from "../lib/config/parse";
import { PROJECT } from "../lib/config/source";
import { verifiedSchematicId } from "../lib/image";
import { type KeyedPatch, readyEndpoints } from "../lib/plan";
import { schematicFor } from "../lib/schematic";
import { SECRET_OUTPUTS, secretOutputsOf, TYPES } from "../lib/tokens";
import { validatorInput } from "../lib/validate";
import { credentialsSecret } from "../policy/rules";
import { certificate } from "./fixtures/certs";
import { stackWith, validStack } from "./fixtures/stacks";
import { isSecret, type MockOutputs, type Plan, plan, promiseOf } from "./harness";

const T = TYPES;

/** This checkout. */
const REPO = path.resolve(__dirname, "..");

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** The cluster's certificates as Talos issues them: clients for a year, CAs for ten. */
const CERTS = {
  talosClient: certificate("/O=os:admin/CN=admin", 365),
  kubeClient: certificate("/O=system:masters/CN=admin", 365),
  talosCa: certificate("/O=talos", 3650),
  kubernetesCa: certificate("/O=kubernetes", 3650),
  etcdCa: certificate("/O=etcd", 3650),
  aggregatorCa: certificate("/CN=front-proxy", 3650),
};

/** Stands in for the providers: the factory hashes the schematic it gets, as the real one does. */
function providers(): MockOutputs {
  return {
    [T.schematic]: (inputs) => ({ id: sha256(String(inputs.schematic)) }),
    [T.secrets]: () => ({
      machineSecrets: {
        secrets: { bootstrapToken: "token" },
        certs: {
          os: { cert: CERTS.talosCa, key: "k" },
          k8s: { cert: CERTS.kubernetesCa, key: "k" },
          etcd: { cert: CERTS.etcdCa, key: "k" },
          k8sAggregator: { cert: CERTS.aggregatorCa, key: "k" },
        },
      },
      clientConfiguration: { caCertificate: CERTS.talosCa, clientCertificate: CERTS.talosClient, clientKey: "key" },
    }),
    [T.credentials]: (inputs) => ({
      kubeconfig: "apiVersion: v1\nkind: Config\nusers: [{name: admin}]\n",
      talosconfig: `context: ${String(inputs.clusterName)}\n`,
      talosClientCertificate: CERTS.talosClient,
      kubernetesClientCertificate: CERTS.kubeClient,
    }),
    [T.configApply]: () => ({ adopted: false, installMode: "AUTO" }),
    [T.nodeState]: (inputs) => ({
      runningTalosVersion: inputs.talosVersion,
      bootedSchematicId: inputs.schematicId,
      appliedKubernetesVersion: inputs.kubernetesVersion,
    }),
  };
}
const parsePatches = (list: unknown) => (list as KeyedPatch[]).map((k) => JSON.parse(k.patch));
/** The hostname a node's config patches give it: each node's config is rendered on its own. */
const hostnameIn = (list: unknown): string | undefined =>
  parsePatches(list).find((x) => x.machine?.network?.hostname)?.machine.network.hostname;
const calls = {
  [T.machineConfig]: (args: Record<string, unknown>) => ({
    machineConfiguration: `machine config for ${String(args.machineType)} ${hostnameIn(args.configPatches)}`,
  }),
};

async function planStack(raw: Record<string, unknown> = validStack()) {
  const { config } = parseConfig(raw);
  let out: StackOutputs | undefined;
  const p = await plan(
    (record) => {
      out = deployCluster(config, { transformations: [record] });
    },
    providers(),
    calls,
  );
  if (out === undefined) throw new Error("program did not run");
  return { plan: p, out, config };
}

/** The patches a node's config was rendered with, found by its hostname. */
function patchesOf(p: Plan, node: string) {
  const call = p.calls.find((c) => c.token === T.machineConfig && hostnameIn(c.inputs.configPatches) === node);
  if (call === undefined) throw new Error(`no machine config rendered for ${node}`);
  return parsePatches(call.inputs.configPatches);
}
const INTEL_UCODE_ONLY = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8";

describe("the image", () => {
  it("always puts siderolabs/intel-ucode in the schematic, even when the stack lists no extensions", async () => {
    const { plan: p } = await planStack(stackWith({ extensions: [] }));
    const [schematic] = p.ofType(T.schematic);
    expect(schematic?.inputs.schematic).toContain("- siderolabs/intel-ucode");
    // The id the public factory gives the intel-ucode-only schematic.
    expect(sha256(String(schematic?.inputs.schematic))).toBe(INTEL_UCODE_ONLY);
  });

  it("keeps the schematic, and so its id, the same whatever order or repeats the extensions come in", async () => {
    const a = await planStack(stackWith({ extensions: ["siderolabs/iscsi-tools", "siderolabs/util-linux-tools"] }));
    const b = await planStack(
      stackWith({
        extensions: ["siderolabs/util-linux-tools", "siderolabs/intel-ucode", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools"],
      }),
    );
    const text = (x: Plan) => x.ofType(T.schematic)[0]?.inputs.schematic;
    expect(text(a.plan)).toBe(text(b.plan));
    expect(a.out.installerImage).toBe(b.out.installerImage);
  });

  it("replaces the schematic when its content changes, since its id is the resource id", async () => {
    const { plan: p } = await planStack();
    expect(p.ofType(T.schematic)[0]?.replaceOnChanges).toEqual(["schematic"]);
  });

  it("exports the schematic id, installer image and boot media of that schematic", async () => {
    const { out, plan: p } = await planStack();
    const id = sha256(String(p.ofType(T.schematic)[0]?.inputs.schematic));
    expect(await promiseOf(out.schematicId)).toBe(id);
    expect(out.installerImage).toBe(`factory.talos.dev/installer/${id}:v1.11.5`);
    expect(out.isoUrl).toBe(`https://factory.talos.dev/image/${id}/v1.11.5/metal-amd64.iso`);
    expect(out.diskImageUrl).toBe(`https://factory.talos.dev/image/${id}/v1.11.5/metal-amd64.raw.zst`);
  });

  it("uses a self-hosted factory's host in the installer image", async () => {
    const { out } = await planStack(stackWith({ imageFactoryHost: "factory.internal.example:8080" }));
    expect(out.installerImage).toMatch(/^factory\.internal\.example:8080\/installer\/[0-9a-f]{64}:v1\.11\.5$/);
  });

  it("installs from the factory the talos plugin registers the schematic with, when the stack names only that one", async () => {
    const { out } = await planStack(stackWith({ "talos:imageFactoryUrl": "http://10.0.0.5:8080" }));
    expect(out.installerImage).toMatch(/^10\.0\.0\.5:8080\/installer\/[0-9a-f]{64}:v1\.11\.5$/);
  });

  it("fails the deployment when the factory's schematic id is not the one the nodes will install", () => {
    const expected = schematicFor([]);
    expect(verifiedSchematicId(INTEL_UCODE_ONLY, expected)).toBe(INTEL_UCODE_ONLY);
    expect(() => verifiedSchematicId("0".repeat(64), expected)).toThrow(
      `Image Factory returned schematic ${"0".repeat(64)}, expected ${INTEL_UCODE_ONLY}`,
    );
  });
});

describe("the machine secrets", () => {
  it("are created once, protected, kept on destroy and not replaced by a Talos version change", async () => {
    const { plan: p } = await planStack();
    const secrets = p.ofType(T.secrets);
    expect(secrets).toHaveLength(1);
    expect(secrets[0]?.inputs.talosVersion).toBe("v1.11.5");
    expect(secrets[0]?.protect).toBe(true);
    expect(secrets[0]?.retainOnDelete).toBe(true);
    expect(secrets[0]?.ignoreChanges).toEqual(["talosVersion"]);
  });

  it("mark the machine secrets, client certificate, talosconfig and kubeconfig secret in state", async () => {
    const { plan: p } = await planStack();
    expect(p.ofType(T.secrets)[0]?.additionalSecretOutputs).toEqual(["machineSecrets", "clientConfiguration"]);
    expect(p.ofType(T.credentials)[0]?.additionalSecretOutputs).toEqual(expect.arrayContaining(["talosconfig", "kubeconfig"]));
  });
});

describe("what the policy pack judges", () => {
  it("finds every resource whose type carries credentials listing them all as secret outputs, as the pack requires", async () => {
    // With recover.snapshot, so the etcd recovery is declared too.
    const dir = mkdtempSync(path.join(tmpdir(), "recover-"));
    writeFileSync(path.join(dir, "prod-cp-1.db"), "a snapshot");
    const { plan: p } = await planStack(stackWith({ recover: { snapshot: path.join(dir, "prod-cp-1.db") } })).finally(() =>
      rmSync(dir, { recursive: true, force: true }),
    );
    const judged = p.resources.filter((r) => secretOutputsOf(r.type) !== undefined);
    // The talos plugin's config apply and kubeconfig are judged for the stacks that still hold them; the program no longer declares them.
    const declared = Object.keys(SECRET_OUTPUTS).filter((t) => t !== T.pluginConfigApply && t !== T.pluginKubeconfig);
    expect(new Set(judged.map((r) => r.type))).toEqual(new Set(declared));
    for (const r of judged) {
      const asPolicySees = {
        type: r.type,
        name: r.name,
        urn: "",
        props: r.inputs,
        protect: r.protect,
        additionalSecretOutputs: r.additionalSecretOutputs,
      };
      expect(credentialsSecret(asPolicySees)).toBeUndefined();
    }
  });
});

describe("node configuration", () => {
  it("renders one machine configuration per node, of its role, with the cluster's name, endpoint, versions and secrets", async () => {
    const { plan: p, config } = await planStack();
    const configs = p.calls.filter((c) => c.token === T.machineConfig);
    expect(configs.map((c) => [hostnameIn(c.inputs.configPatches), c.inputs.machineType]).sort()).toEqual(
      config.nodes.map((n) => [n.name, n.role]).sort(),
    );
    for (const c of configs) {
      expect(c.inputs).toMatchObject({
        clusterName: "lab",
        clusterEndpoint: "https://10.0.0.10:6443",
        talosVersion: "v1.11.5",
        kubernetesVersion: "1.34.1",
      });
      expect(c.inputs.node).toBe(hostnameIn(c.inputs.configPatches));
      expect(c.inputs.machineSecrets).toMatchObject({ secrets: { bootstrapToken: "token" } });
    }
  });

  it("renders each node's config from byte for byte the patches Talos' validator judged, in the same order, each with its key", async () => {
    const nodes = (validStack().nodes as Record<string, unknown>[]).map((n, i) =>
      i === 3 ? { ...n, patches: [{ machine: { sysctls: { "vm.swappiness": "10" } } }] } : n,
    );
    const raw = stackWith({
      nodes,
      patches: {
        all: [{ machine: { time: { servers: ["time.example.com"] } } }],
        worker: [{ machine: { kubelet: { extraArgs: { v: "2" } } } }],
      },
    });
    const { plan: p, config } = await planStack(raw);
    const judged = validatorInput(config).nodes;
    expect(judged.map((n) => n.name)).toEqual(config.nodes.map((n) => n.name));
    for (const node of judged) {
      const call = p.calls.find((c) => c.token === T.machineConfig && hostnameIn(c.inputs.configPatches) === node.name);
      expect(call?.inputs.configPatches).toEqual(node.patches);
    }
  });

  it("keeps the config contract at the Talos release the cluster was created with", async () => {
    const { config } = parseConfig(stackWith({ talosVersion: "v1.11.5" }));
    // As if the secrets were created under v1.10.7 and the stack has since moved to v1.11.5.
    const created = {
      [T.secrets]: (inputs: Record<string, unknown>) => ({ ...providers()[T.secrets]?.(inputs, ""), talosVersion: "v1.10.7" }),
    };
    let out: StackOutputs | undefined;
    const p = await plan(
      (record) => {
        out = deployCluster(config, { transformations: [record] });
      },
      { ...providers(), ...created },
      calls,
    );
    if (out === undefined) throw new Error("program did not run");
    await promiseOf(out.talosconfig);
    for (const c of p.calls.filter((x) => x.token === T.machineConfig)) expect(c.inputs.talosVersion).toBe("v1.10.7");
    expect(out.installerImage).toMatch(/:v1\.11\.5$/);
  });

  it("applies one configuration per node, of the node's role, to the node's address", async () => {
    const { plan: p, config } = await planStack();
    const applies = p.ofType(T.configApply);
    expect(applies.map((a) => a.inputs.node)).toEqual(config.nodes.map((n) => n.address));
    for (const [i, node] of config.nodes.entries()) {
      expect(applies[i]?.name).toBe(`lab-${node.name}`);
      expect(applies[i]?.inputs.machineConfiguration).toBe(`machine config for ${node.role} ${node.name}`);
      expect(applies[i]?.secretInputs).toEqual(expect.arrayContaining(["clientConfiguration", "machineConfiguration"]));
    }
  });

  it("declares every node's config apply with the stack's apply mode (talosnode installs a new node with auto or reboot)", async () => {
    const { plan: p } = await planStack(stackWith({ applyMode: "no_reboot" }));
    for (const apply of p.ofType(T.configApply)) expect(apply.inputs.applyMode).toBe("no_reboot");
  });

  it("gives every node the factory installer image of the schematic, and its own hostname and disk", async () => {
    const { plan: p, out, config } = await planStack();
    for (const node of config.nodes) {
      const install = patchesOf(p, node.name).find((x) => x.machine?.install)?.machine.install;
      expect(install.image).toBe(out.installerImage);
    }
    const cp1 = patchesOf(p, "cp-1");
    expect(cp1).toContainEqual(expect.objectContaining({ machine: expect.objectContaining({ network: { hostname: "cp-1" } }) }));
    const worker = patchesOf(p, "worker-1").find((x) => x.machine?.install)?.machine;
    expect(worker.install.diskSelector).toEqual({ type: "ssd" });
  });

  it("installs no node before the factory has the schematic", async () => {
    const { plan: p } = await planStack();
    for (const apply of p.ofType(T.configApply)) expect(apply.dependsOn).toContain("lab-schematic");
  });

  it("puts the role patches in the role's configuration: the VIP on control planes only", async () => {
    const { plan: p } = await planStack();
    const byRole = Object.fromEntries(
      p.calls.filter((c) => c.token === T.machineConfig).map((c) => [c.inputs.machineType, JSON.stringify(c.inputs.configPatches)]),
    );
    expect(byRole.controlplane).toContain('\\"vip\\":{\\"ip\\":\\"10.0.0.10\\"}');
    expect(byRole.worker).not.toContain("vip");
  });
});

describe("a node that does not answer", () => {
  it("is waited for, with its name, address and the node timeout, before its first config apply, so the wait shows while it lasts", async () => {
    const { plan: p, config } = await planStack(stackWith({ nodeTimeout: "45s" }));
    const reachable = p.ofType(T.reachable);
    expect(reachable.map((r) => [r.name, r.inputs.node, r.inputs.address, r.inputs.timeout])).toEqual(
      config.nodes.map((n) => [`lab-${n.name}-reachable`, n.name, n.address, "45s"]),
    );
    for (const [i, apply] of p.ofType(T.configApply).entries()) expect(apply.dependsOn).toContain(`lab-${config.nodes[i]?.name}-reachable`);
  });
});

describe("timeouts", () => {
  it("gives config applies the stack's node timeout, and the bootstrap its own, with every key set", async () => {
    const { plan: p } = await planStack(stackWith({ nodeTimeout: "45s", bootstrapTimeout: "30m" }));
    for (const apply of p.ofType(T.configApply)) expect(apply.inputs.timeout).toBe("45s");
    expect(p.ofType(T.bootstrap)[0]?.inputs.timeouts).toEqual({ create: "30m" });
  });

  it("waits 20 minutes for the bootstrap and 10 for other node operations when the stack sets none", async () => {
    const { plan: p } = await planStack();
    expect(p.ofType(T.bootstrap)[0]?.inputs.timeouts).toEqual({ create: "20m" });
  });
});

describe("changes to running nodes", () => {
  it("are no change of the config applies (their own diff shows none), so nothing here needs ignoreChanges", async () => {
    const { plan: p } = await planStack();
    for (const apply of p.ofType(T.configApply)) {
      expect(apply.ignoreChanges ?? []).toEqual([]);
      expect(apply.inputs.configPatches).toBeUndefined();
    }
  });

  it("roll through one Rollout for the whole cluster, after every install and the bootstrap, with each node's config, release and image", async () => {
    const { plan: p, config, out } = await planStack();
    const rollouts = p.ofType(T.rollout);
    expect(rollouts.map((r) => r.name)).toEqual(["lab-rollout"]);
    const [rollout] = rollouts;
    expect(rollout?.parent).toBe("lab");
    expect(rollout?.dependsOn).toEqual([...config.nodes.map((n) => `lab-${n.name}`), "lab-bootstrap"]);
    const schematicId = await promiseOf(out.schematicId);
    expect(rollout?.inputs.nodes).toEqual(
      config.nodes.map((n) => ({
        name: n.name,
        address: n.address,
        role: n.role,
        talosVersion: "v1.11.5",
        schematicId,
        installerImage: out.installerImage,
        machineConfiguration: `machine config for ${n.role} ${n.name}`,
      })),
    );
    expect(rollout?.secretInputs).toEqual(expect.arrayContaining(["clientConfiguration", "nodes"]));
  });

  it("passes the stack's apply mode and upgrade settings, and snapshots to an absolute folder per stack", async () => {
    const { plan: p } = await planStack(
      stackWith({
        applyMode: "reboot",
        talosVersion: "v1.14.1",
        upgrade: { maxUnavailableWorkers: 2, healthTimeout: "5m", rebootMode: "powercycle", path: ["v1.12.6", "v1.13.9"] },
      }),
    );
    const inputs = p.ofType(T.rollout)[0]?.inputs;
    expect(inputs).toMatchObject({
      applyMode: "reboot",
      maxUnavailableWorkers: 2,
      healthTimeout: "5m",
      rebootMode: "powercycle",
      upgradePath: ["v1.12.6", "v1.13.9"],
    });
    // By default in the user's state folder, outside the checkout CI cleans before each job.
    const dir = String(inputs?.snapshotDir);
    expect(path.isAbsolute(dir)).toBe(true);
    expect(dir.endsWith(path.join("talos-cluster", "snapshots", "test"))).toBe(true);
    expect(path.relative(REPO, dir).startsWith(`..${path.sep}`)).toBe(true);
    expect(inputs?.snapshotPrefix).toBe("test");
    const defaults = (await planStack()).plan.ofType(T.rollout)[0]?.inputs;
    expect(defaults).toMatchObject({ maxUnavailableWorkers: 1, healthTimeout: "15m", rebootMode: "default" });
    expect(defaults?.upgradePath).toBeUndefined();
  });

  it("writes snapshots to upgrade.snapshotDir when the stack sets it", async () => {
    const { plan: p } = await planStack(stackWith({ upgrade: { snapshotDir: "/var/backups/etcd" } }));
    expect(p.ofType(T.rollout)[0]?.inputs.snapshotDir).toBe("/var/backups/etcd");
  });
});

describe("disaster recovery", () => {
  it("declares no etcd recovery without recover.snapshot", async () => {
    const { plan: p } = await planStack();
    expect(p.ofType(T.etcdRecovery)).toEqual([]);
    expect(p.ofType(T.rollout)[0]?.dependsOn).not.toContain("lab-etcd-recovery");
  });

  it("recovers from recover.snapshot (relative to the program) after the applies and the bootstrap, before the rollout, node reads and kubeconfig", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "recover-"));
    try {
      writeFileSync(path.join(dir, "prod-cp-1.db"), "a snapshot");
      const relative = path.relative(process.cwd(), path.join(dir, "prod-cp-1.db"));
      const { plan: p, config } = await planStack(stackWith({ recover: { snapshot: relative } }));
      const [recovery] = p.ofType(T.etcdRecovery);
      expect(recovery?.name).toBe("lab-etcd-recovery");
      expect(recovery?.inputs).toMatchObject({
        snapshot: path.join(dir, "prod-cp-1.db"),
        controlPlanes: config.controlPlanes.map((n) => ({ name: n.name, address: n.address })),
        bootstrapNode: config.controlPlanes[0]?.name,
        timeout: "15m",
      });
      expect(recovery?.dependsOn).toEqual([...config.nodes.map((n) => `lab-${n.name}`), "lab-bootstrap"]);
      expect(recovery?.secretInputs).toEqual(expect.arrayContaining(["clientConfiguration", "machineSecrets"]));
      expect(p.ofType(T.rollout)[0]?.dependsOn).toContain("lab-etcd-recovery");
      for (const state of p.ofType(T.nodeState)) expect(state.dependsOn).toContain("lab-etcd-recovery");
      expect(p.ofType(T.credentials)[0]?.dependsOn).toEqual(["lab-bootstrap", "lab-etcd-recovery"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops naming recover.snapshot when no file is there", () => {
    const { config } = parseConfig(stackWith({ recover: { snapshot: "/nonexistent/prod-cp-1.db" } }));
    expect(() => recoverySnapshot(config)).toThrow(
      `${PROJECT}:recover.snapshot: "/nonexistent/prod-cp-1.db" (/nonexistent/prod-cp-1.db) is not a file: name an etcd snapshot, e.g. one the rollout wrote to upgrade.snapshotDir, or remove the key`,
    );
  });
});

describe("where etcd snapshots go", () => {
  const upgrade = (snapshotDir?: string) => ({
    upgrade: {
      maxUnavailableWorkers: 1,
      healthTimeout: "15m",
      rebootMode: "default" as const,
      kubernetesChecks: true,
      path: [],
      snapshotDir,
    },
  });
  let repo: string;
  beforeEach(() => {
    // A checkout: a git work tree with the project (Pulumi.yaml) in a subfolder.
    repo = mkdtempSync(path.join(tmpdir(), "snapshots-repo-"));
    mkdirSync(path.join(repo, ".git"));
    mkdirSync(path.join(repo, "infra"));
    writeFileSync(path.join(repo, "infra", "Pulumi.yaml"), "name: talos-cluster\n");
  });
  afterEach(() => rmSync(repo, { recursive: true, force: true }));
  const at = (env: Record<string, string>) => ({ env, home: "/home/op", cwd: path.join(repo, "infra") });

  it("defaults to the user's state folder per stack: $XDG_STATE_HOME, else ~/.local/state", () => {
    expect(snapshotFolder(upgrade(), "prod", at({}))).toEqual({
      dir: "/home/op/.local/state/talos-cluster/snapshots/prod",
      prefix: "prod",
    });
    expect(snapshotFolder(upgrade(), "prod", at({ XDG_STATE_HOME: "/srv/state" })).dir).toBe("/srv/state/talos-cluster/snapshots/prod");
    // The XDG spec: a relative XDG_STATE_HOME is invalid and ignored.
    expect(snapshotFolder(upgrade(), "prod", at({ XDG_STATE_HOME: "state" })).dir).toBe(
      "/home/op/.local/state/talos-cluster/snapshots/prod",
    );
  });

  it("resolves a relative upgrade.snapshotDir against the program's folder", () => {
    expect(snapshotFolder(upgrade("../backups"), "prod", at({})).dir).toBe(path.join(repo, "backups"));
  });

  it("refuses a folder inside the repository when CI is set, since the next job's checkout cleans it", () => {
    const refusal = (dir: string, root = repo) =>
      `${PROJECT}:upgrade.snapshotDir: ${dir} is inside the repository (${root}) and CI is set: the next job's checkout cleans the workspace and would delete the snapshots; set upgrade.snapshotDir to an absolute folder outside any checkout, e.g. /var/lib/talos-cluster/snapshots/prod`;
    // Beside the project, and anywhere in the git work tree around it.
    expect(() => snapshotFolder(upgrade(".snapshots/prod"), "prod", at({ CI: "true" }))).toThrow(
      new ConfigError([refusal(path.join(repo, "infra", ".snapshots", "prod"), path.join(repo, "infra"))]),
    );
    expect(() => snapshotFolder(upgrade("../backups"), "prod", at({ CI: "1" }))).toThrow(
      new ConfigError([refusal(path.join(repo, "backups"))]),
    );
    // The default, when the state folder itself is in the checkout.
    expect(() => snapshotFolder(upgrade(), "prod", at({ CI: "true", XDG_STATE_HOME: path.join(repo, "state") }))).toThrow(
      /upgrade\.snapshotDir: unset, so snapshots would go to .*state\/talos-cluster\/snapshots\/prod \(under XDG_STATE_HOME or HOME\), which is inside the repository/,
    );
  });

  it("accepts a folder inside the repository without CI, and one outside it with CI", () => {
    expect(snapshotFolder(upgrade(".snapshots/prod"), "prod", at({})).dir).toBe(path.join(repo, "infra", ".snapshots", "prod"));
    expect(snapshotFolder(upgrade(".snapshots/prod"), "prod", at({ CI: "false" })).dir).toBe(
      path.join(repo, "infra", ".snapshots", "prod"),
    );
    expect(snapshotFolder(upgrade("/var/lib/talos-cluster/snapshots"), "prod", at({ CI: "true" })).dir).toBe(
      "/var/lib/talos-cluster/snapshots",
    );
    expect(snapshotFolder(upgrade(`${repo}-backups`), "prod", at({ CI: "true" })).dir).toBe(`${repo}-backups`);
    expect(snapshotFolder(upgrade(), "prod", at({ CI: "true" })).dir).toBe("/home/op/.local/state/talos-cluster/snapshots/prod");
  });

  it("stops the program before it declares anything when the folder is refused", async () => {
    const saved = process.env.CI;
    process.env.CI = "true";
    try {
      await expect(planStack(stackWith({ upgrade: { snapshotDir: ".snapshots/test" } }))).rejects.toThrow(
        /upgrade\.snapshotDir: .* is inside the repository/,
      );
    } finally {
      if (saved === undefined) delete process.env.CI;
      else process.env.CI = saved;
    }
  });
});

describe("live node state", () => {
  it("reads every node back through one NodeState, parented to the cluster, after its config apply and the bootstrap", async () => {
    const { plan: p, config } = await planStack();
    const states = p.ofType(T.nodeState);
    expect(states.map((s) => s.name)).toEqual(config.nodes.map((n) => `lab-${n.name}-state`));
    for (const [i, state] of states.entries()) {
      expect(state.parent).toBe("lab");
      expect(state.dependsOn).toEqual([`lab-${config.nodes[i]?.name}`, "lab-bootstrap", "lab-rollout"]);
      expect(state.inputs.node).toBe(config.nodes[i]?.address);
      // Control planes carry the VIP, whose link the read checks; workers none.
      expect(state.inputs.vip).toBe(config.nodes[i]?.role === "controlplane" ? "10.0.0.10" : undefined);
    }
  });

  it("gives each NodeState what the stack declares for its node and the config its apply produced", async () => {
    const { plan: p, out } = await planStack(stackWith({ nodeTimeout: "45s" }));
    const state = p.byName("lab-worker-1-state");
    expect(state.inputs).toMatchObject({
      talosVersion: "v1.11.5",
      kubernetesVersion: "1.34.1",
      installerImage: out.installerImage,
      schematicId: await promiseOf(out.schematicId),
      machineConfiguration: "machine config for worker worker-1",
      timeout: "45s",
    });
  });

  it("gives every resource that dials the nodes the machine secrets, secret, to mint its own certificate from", async () => {
    const { plan: p } = await planStack();
    const dialing = [...p.ofType(T.configApply), ...p.ofType(T.rollout), ...p.ofType(T.nodeState)];
    expect(dialing.length).toBeGreaterThan(2);
    for (const r of dialing) {
      expect(r.inputs.machineSecrets, r.name).toMatchObject({ certs: { os: { cert: expect.any(String), key: expect.any(String) } } });
      expect(r.secretInputs, r.name).toContain("machineSecrets");
    }
  });

  it("keeps the client key and the full machine config secret, in inputs and in state", async () => {
    const { plan: p } = await planStack();
    for (const state of p.ofType(T.nodeState)) {
      expect(state.secretInputs).toEqual(expect.arrayContaining(["clientConfiguration"]));
      expect(state.additionalSecretOutputs).toEqual(expect.arrayContaining(["clientConfiguration", "machineConfiguration"]));
    }
    for (const apply of p.ofType(T.configApply)) expect(apply.additionalSecretOutputs).toContain("machineConfiguration");
  });

  it("exports what each node runs, as the last up or refresh read it, in the nodes output", async () => {
    const { out } = await planStack();
    expect((await promiseOf(out.nodes))[0]).toEqual({
      name: "cp-1",
      address: "10.0.0.11",
      role: "controlplane",
      runningTalosVersion: "v1.11.5",
      bootedSchematicId: await promiseOf(out.schematicId),
      kubernetesVersion: "1.34.1",
    });
  });
});

describe("bootstrap and credentials", () => {
  it("bootstraps exactly once, on the first control plane, after its configuration is applied", async () => {
    const { plan: p } = await planStack(
      stackWith({
        nodes: [
          { name: "worker-0", address: "10.0.0.20", role: "worker", installDisk: "/dev/sda" },
          { name: "cp-b", address: "10.0.0.12", role: "controlplane", installDisk: "/dev/sda" },
          { name: "cp-a", address: "10.0.0.11", role: "controlplane", installDisk: "/dev/sda" },
          { name: "cp-c", address: "10.0.0.13", role: "controlplane", installDisk: "/dev/sda" },
        ],
      }),
    );
    const bootstraps = p.ofType(T.bootstrap);
    expect(bootstraps).toHaveLength(1);
    expect(bootstraps[0]?.inputs.node).toBe("10.0.0.12");
    expect(bootstraps[0]?.dependsOn).toEqual(["lab-cp-b"]);
    expect(bootstraps[0]?.ignoreChanges).toEqual(["node"]);
  });

  it("mints the kubeconfig and talosconfig from the machine secrets after the bootstrap, for the cluster's endpoint, renewed 30 days before their end", async () => {
    const { plan: p } = await planStack();
    const credentials = p.ofType(T.credentials);
    expect(credentials).toHaveLength(1);
    expect(credentials[0]?.inputs).toMatchObject({ clusterName: "lab", clusterEndpoint: "https://10.0.0.10:6443", renewBefore: "720h" });
    expect(credentials[0]?.secretInputs).toContain("machineSecrets");
    expect(credentials[0]?.dependsOn).toEqual(["lab-bootstrap"]);
    expect(p.ofType(T.pluginKubeconfig)).toHaveLength(0);
    const { plan: later } = await planStack(stackWith({ credentials: { renewBefore: "2160h" } }));
    expect(later.ofType(T.credentials)[0]?.inputs.renewBefore).toBe("2160h");
  });

  it("lists every control plane as a talosconfig endpoint and no default nodes, so talosctl never targets the whole cluster", async () => {
    const { plan: p } = await planStack();
    const [credentials] = p.ofType(T.credentials);
    expect(credentials?.inputs).toMatchObject({ clusterName: "lab", endpoints: ["10.0.0.11", "10.0.0.12", "10.0.0.13"] });
    expect(credentials?.inputs.nodes).toBeUndefined();
  });

  it("exports the kubeconfig, talosconfig and machine secrets only as secrets", async () => {
    const { out } = await planStack();
    expect(await isSecret(out.kubeconfig)).toBe(true);
    expect(await isSecret(out.talosconfig)).toBe(true);
    expect(await isSecret(out.machineSecrets as pulumi.Output<unknown>)).toBe(true);
    expect(await promiseOf(out.kubeconfig)).toContain("kind: Config");
    expect(await promiseOf(out.talosconfig)).toBe("context: lab\n");
  });
});

describe("credentials", () => {
  it("exports when each certificate ends, in plain text: the subjects and dates, never a key", async () => {
    const { out } = await planStack();
    expect(await isSecret(out.credentials)).toBe(false);
    const list = await promiseOf(out.credentials);
    expect(list.map((c) => [c.name, c.subject, c.daysLeft])).toEqual([
      ["talosconfig client certificate", "O=os:admin, CN=admin", 364],
      ["kubeconfig client certificate", "O=system:masters, CN=admin", 364],
      ["Talos CA", "O=talos", 3649],
      ["Kubernetes CA", "O=kubernetes", 3649],
      ["etcd CA", "O=etcd", 3649],
      ["aggregator CA", "CN=front-proxy", 3649],
    ]);
    expect(JSON.stringify(list)).not.toMatch(/BEGIN|key/i);
  });
});

describe("addons", () => {
  it("builds the Kubernetes provider from the cluster's kubeconfig, as a secret", async () => {
    const { plan: p } = await planStack();
    const [provider] = p.ofType(T.k8sProvider);
    expect(provider?.inputs.kubeconfig).toContain("kind: Config");
    expect(provider?.secretInputs).toContain("kubeconfig");
  });

  it("makes the provider and every addon wait for the bootstrap and the kubeconfig", async () => {
    const { plan: p } = await planStack();
    const addons = p.resources.filter((r) => r.type.startsWith("kubernetes:") || r.type === T.k8sProvider);
    expect(addons.map((r) => r.name)).toEqual(["lab-k8s", "lab-cilium", "lab-kubelet-serving-cert-approver", "lab-metrics-server"]);
    for (const addon of addons) expect(addon.dependsOn).toEqual(expect.arrayContaining(["lab-bootstrap", "lab-credentials"]));
  });

  it("declares no Kubernetes provider at all when every addon is off", async () => {
    const off = { enabled: false };
    const { plan: p, out } = await planStack(stackWith({ addons: { cilium: off, kubeletServingCertApprover: off, metricsServer: off } }));
    expect(p.ofType(T.k8sProvider)).toHaveLength(0);
    expect(p.resources.filter((r) => r.type.startsWith("kubernetes:"))).toHaveLength(0);
    expect(out.addons).toEqual([]);
  });

  it("leaves out exactly the addons switched off", async () => {
    const { plan: p, out } = await planStack(stackWith({ addons: { metricsServer: { enabled: false } } }));
    expect(p.resources.filter((r) => r.type.startsWith("kubernetes:")).map((r) => r.name)).toEqual([
      "lab-cilium",
      "lab-kubelet-serving-cert-approver",
    ]);
    expect(out.addons).toEqual(["cilium", "kubeletServingCertApprover"]);
  });
});

describe("component tree", () => {
  it("parents every Talos resource to its component and registers the components under their tokens", async () => {
    const { plan: p } = await planStack();
    expect(p.byName("lab").type).toBeDefined();
    const types = new Set(p.resources.map((r) => r.type));
    expect(types).toContain(T.image);
    expect(types).toContain(T.cluster);
    expect(types).toContain(T.addons);
    const image = p.resources.find((r) => r.type === T.image);
    const cluster = p.resources.find((r) => r.type === T.cluster);
    expect(p.ofType(T.schematic)[0]?.parent).toBe(image?.name);
    for (const t of [T.secrets, T.configApply, T.bootstrap, T.credentials]) {
      for (const r of p.ofType(t)) expect(r.parent).toBe(cluster?.name);
    }
  });
});

describe("the wait before the addons", () => {
  it("asks the VIP for /readyz too when the endpoint is another name, and nothing more when it is the VIP", () => {
    const vip = { address: "10.0.0.10", interface: "enp1s0", dhcp: false };
    expect(readyEndpoints({ endpoint: "https://10.0.0.10:6443", network: { podSubnets: [], serviceSubnets: [], vip } })).toEqual([]);
    expect(readyEndpoints({ endpoint: "https://k8s.example.com:6443", network: { podSubnets: [], serviceSubnets: [], vip } })).toEqual([
      "https://10.0.0.10:6443",
    ]);
    expect(readyEndpoints({ endpoint: "https://k8s.example.com:6443", network: { podSubnets: [], serviceSubnets: [] } })).toEqual([]);
  });

  it("waits for every node by name, kubernetesReadyTimeout long (15 minutes unless the stack says otherwise)", async () => {
    const { plan: p, config } = await planStack(stackWith({ kubernetesReadyTimeout: "25m" }));
    expect(p.byName("lab-nodes-ready").inputs).toMatchObject({ nodes: config.nodes.map((n) => n.name), timeout: "25m" });
    expect(parseConfig(validStack()).config.kubernetesReadyTimeout).toBe("15m");
  });
});
