import { describe, expect, it } from "vitest";
import { TYPES } from "../lib/tokens";
import {
  credentialsSecret,
  installImagesFromSchematic,
  knownValues,
  type PlannedResource,
  prodControlPlaneQuorum,
  prodCredentialsExpiry,
  schematicHasIntelUcode,
  schematicIdOf,
  secretsProtected,
} from "../policy/rules";

// The factory's id for a schematic holding intel-ucode alone.
const ID = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8";
const OTHER_ID = "a".repeat(64);

function resource(
  type: string,
  name: string,
  props: Record<string, unknown> = {},
  { stack = "prod", protect = false, additionalSecretOutputs = [] as string[] } = {},
): PlannedResource {
  return { type, name, urn: `urn:pulumi:${stack}::talos-cluster::${type}::${name}`, props, protect, additionalSecretOutputs };
}

const schematic = (extensions: string[]) =>
  resource(TYPES.schematic, "prod-schematic", {
    schematic: `customization:\n  systemExtensions:\n    officialExtensions:\n${extensions.map((e) => `      - ${e}\n`).join("")}`,
  });
// The talos plugin's apply, which a program may still declare: patches on top of its input.
const apply = (name: string, image?: string) =>
  resource(TYPES.pluginConfigApply, name, {
    configPatches: [JSON.stringify({ machine: { network: { hostname: name }, ...(image ? { install: { image } } : {}) } })],
  });

describe("policy: schematic-has-intel-ucode", () => {
  it("passes a schematic with intel-ucode", () => {
    expect(schematicHasIntelUcode(schematic(["siderolabs/intel-ucode", "siderolabs/iscsi-tools"]))).toBeUndefined();
  });

  it("rejects a schematic without intel-ucode", () => {
    expect(schematicHasIntelUcode(schematic(["siderolabs/iscsi-tools"]))).toBe(
      "schematic prod-schematic lacks siderolabs/intel-ucode: every image must carry CPU microcode updates",
    );
  });

  it("does not judge a schematic whose text is not known yet", () => {
    expect(schematicHasIntelUcode(resource(TYPES.schematic, "s", {}))).toBeUndefined();
  });
});

describe("policy: machine-secrets-protected", () => {
  it("rejects unprotected machine secrets", () => {
    expect(secretsProtected(resource(TYPES.secrets, "prod-secrets"))).toMatch(/^machine secrets prod-secrets must be protected/);
  });

  it("passes protected machine secrets", () => {
    expect(secretsProtected(resource(TYPES.secrets, "prod-secrets", {}, { protect: true }))).toBeUndefined();
  });
});

describe("policy: credentials-are-secret", () => {
  it("rejects a kubeconfig resource that does not mark its credentials secret", () => {
    expect(credentialsSecret(resource(TYPES.pluginKubeconfig, "prod-kubeconfig", {}, { additionalSecretOutputs: ["kubeconfigRaw"] }))).toBe(
      "prod-kubeconfig must list kubernetesClientConfiguration, clientConfiguration in additionalSecretOutputs: they carry cluster credentials",
    );
  });

  it("rejects a config apply whose rendered config (the node's keys) is not marked secret", () => {
    expect(credentialsSecret(resource(TYPES.configApply, "prod-cp-1", {}, { additionalSecretOutputs: ["clientConfiguration"] }))).toBe(
      "prod-cp-1 must list machineConfiguration in additionalSecretOutputs: they carry cluster credentials",
    );
  });

  it("passes machine secrets whose credential outputs are secret", () => {
    const r = resource(TYPES.secrets, "prod-secrets", {}, { additionalSecretOutputs: ["machineSecrets", "clientConfiguration"] });
    expect(credentialsSecret(r)).toBeUndefined();
  });
});

describe("policy: install-image-from-schematic", () => {
  const image = (id: string) => `factory.talos.dev/installer/${id}:v1.11.5`;

  it("passes nodes installing the stack's schematic", () => {
    expect(installImagesFromSchematic([schematic(["siderolabs/intel-ucode"]), apply("cp-1", image(ID))])).toEqual([]);
  });

  it("rejects a node installing another schematic", () => {
    expect(installImagesFromSchematic([schematic(["siderolabs/intel-ucode"]), apply("cp-1", image(OTHER_ID))])).toEqual([
      `cp-1 installs schematic ${OTHER_ID}, not this stack's schematic ${ID}`,
    ]);
  });

  it("rejects a node installing a stock image", () => {
    expect(installImagesFromSchematic([apply("cp-1", "ghcr.io/siderolabs/installer:v1.11.5")])).toEqual([
      "cp-1 installs ghcr.io/siderolabs/installer:v1.11.5, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)",
    ]);
  });

  it("rejects a node with no install image, neither in its config nor in its patches", () => {
    const noImage = resource(TYPES.pluginConfigApply, "cp-1", {
      ...apply("cp-1").props,
      machineConfigurationInput: "machine:\n  type: worker\n",
    });
    expect(installImagesFromSchematic([noImage])).toEqual([
      "cp-1 sets no machine.install.image: the node would install an image without the schematic's extensions",
    ]);
  });

  it("does not judge patches without an image over a config not known yet", () => {
    expect(installImagesFromSchematic([apply("cp-1")])).toEqual([]);
  });

  it("derives the schematic's id from its text, since a policy sees no resource ids", () => {
    expect(schematicIdOf(schematic(["siderolabs/intel-ucode"]).props.schematic)).toBe(ID);
    expect(schematicIdOf("customization:\n  meta: [{key: 10, value: x}]\n")).toBeUndefined();
  });

  it("skips a node whose patches are not known yet (first preview)", () => {
    expect(installImagesFromSchematic([resource(TYPES.pluginConfigApply, "cp-1", {})])).toEqual([]);
  });
});

// The shapes components/cluster.ts declares: a rendered config per node (no patches), the
// Rollout's per-node installer image (what an upgrade installs), each NodeState's.
describe("policy: install-image-from-schematic, on what the program declares", () => {
  const image = (id: string) => `factory.talos.dev/installer/${id}:v1.11.5`;
  // A 1.12 contract renders a HostnameConfig document after the v1alpha1 one.
  const rendered = (installImage?: string) =>
    [
      "version: v1alpha1",
      "machine:",
      "  type: controlplane",
      "  install:",
      "    disk: /dev/sda",
      ...(installImage === undefined ? [] : [`    image: ${installImage}`]),
      "cluster:",
      "  clusterName: lab",
      "---",
      "apiVersion: v1alpha1",
      "kind: HostnameConfig",
      "auto: off",
      "hostname: cp-1",
      "",
    ].join("\n");
  const apply = (installImage?: string) =>
    resource(TYPES.configApply, "lab-cp-1", { node: "10.0.0.11", applyMode: "auto", machineConfiguration: rendered(installImage) });
  const rolloutNode = (name: string, installerImage: string | undefined, schematicId: string | undefined = ID) => ({
    name,
    address: "10.0.0.11",
    role: "controlplane",
    talosVersion: "v1.11.5",
    ...(schematicId === undefined ? {} : { schematicId }),
    ...(installerImage === undefined ? {} : { installerImage }),
    machineConfiguration: rendered(installerImage),
  });
  const rollout = (...nodes: ReturnType<typeof rolloutNode>[]) =>
    resource(TYPES.rollout, "lab-rollout", { nodes, applyMode: "auto", maxUnavailableWorkers: 1, snapshotDir: "/var/lib/snap" });
  const nodeState = (installerImage: string, schematicId: string = ID) =>
    resource(TYPES.nodeState, "lab-cp-1-state", {
      node: "10.0.0.11",
      talosVersion: "v1.11.5",
      schematicId,
      installerImage,
      kubernetesVersion: "1.34.1",
      machineConfiguration: rendered(installerImage),
      timeout: "10m",
    });
  const intelOnly = () => schematic(["siderolabs/intel-ucode"]);

  it("passes a plan whose applies, rollout and node states all carry the stack's factory installer", () => {
    expect(
      installImagesFromSchematic([intelOnly(), apply(image(ID)), rollout(rolloutNode("cp-1", image(ID))), nodeState(image(ID))]),
    ).toEqual([]);
  });

  it("rejects a rendered config that installs a stock image", () => {
    expect(installImagesFromSchematic([intelOnly(), apply("ghcr.io/siderolabs/installer:v1.11.5")])).toEqual([
      "lab-cp-1 installs ghcr.io/siderolabs/installer:v1.11.5, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)",
    ]);
  });

  it("rejects a rendered config without an install image", () => {
    expect(installImagesFromSchematic([intelOnly(), apply()])).toEqual([
      "lab-cp-1 sets no machine.install.image: the node would install an image without the schematic's extensions",
    ]);
  });

  it("rejects a rollout that would upgrade a node to a stock image or another schematic", () => {
    expect(
      installImagesFromSchematic([
        intelOnly(),
        rollout(rolloutNode("cp-1", "ghcr.io/siderolabs/installer:v1.11.5"), rolloutNode("cp-2", image(OTHER_ID))),
      ]),
    ).toEqual([
      "lab-rollout node cp-1 installs ghcr.io/siderolabs/installer:v1.11.5, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)",
      `lab-rollout node cp-2 installs schematic ${OTHER_ID}, not this stack's schematic ${ID}`,
    ]);
  });

  it("rejects a node state whose image is not of the schematic the node should boot", () => {
    expect(installImagesFromSchematic([nodeState(image(OTHER_ID), ID)])).toEqual([
      `lab-cp-1-state installs schematic ${OTHER_ID}, but expects the node to boot schematic ${ID}`,
    ]);
    expect(installImagesFromSchematic([intelOnly(), nodeState("registry.local/talos/installer:v1.11.5")])).toEqual([
      "lab-cp-1-state installs registry.local/talos/installer:v1.11.5, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)",
    ]);
  });

  it("judges what is known on a first preview: the images, not the rendered configs or the schematic id", () => {
    const firstPreview = [
      intelOnly(),
      resource(TYPES.configApply, "lab-cp-1", { node: "10.0.0.11", applyMode: "auto" }),
      rollout(rolloutNode("cp-1", "ghcr.io/siderolabs/installer:v1.11.5", undefined)),
    ];
    expect(installImagesFromSchematic(firstPreview)).toEqual([
      "lab-rollout node cp-1 installs ghcr.io/siderolabs/installer:v1.11.5, which is not an Image Factory installer (<factory>/installer/<schematic id>:<version>)",
    ]);
  });
});

describe("policy: the values a preview does not know yet", () => {
  // As the pack hands properties over: reading an unknown value throws its UnknownValueError.
  class UnknownValueError extends Error {
    readonly unknownTypeSentinel = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
  }
  const unknownAt = <T extends object>(target: T, keys: string[]): T =>
    new Proxy(target, {
      get: (obj, key) => {
        if (typeof key === "string" && keys.includes(key))
          throw new UnknownValueError(`string value at .${key} can't be known during preview`);
        return Reflect.get(obj, key);
      },
    });

  it("leaves unknown values out, keeping everything known around them", () => {
    const node = unknownAt({ name: "cp-1", schematicId: "x", installerImage: "img" }, ["schematicId"]);
    const props = unknownAt({ nodes: [node], applyMode: "auto", machineConfigurationInput: "x" }, ["machineConfigurationInput"]);
    expect(knownValues(props)).toEqual({ nodes: [{ name: "cp-1", installerImage: "img" }], applyMode: "auto" });
  });

  it("passes on any other error", () => {
    const broken = new Proxy(
      { a: 1 },
      {
        get: () => {
          throw new TypeError("boom");
        },
      },
    );
    expect(() => knownValues(broken)).toThrow("boom");
  });
});

describe("policy: prod-control-plane-quorum", () => {
  const cluster = (stack: string, controlPlanes: string[]) => resource(TYPES.cluster, stack, { controlPlanes }, { stack });

  it("rejects a prod cluster with an even number of control planes", () => {
    expect(prodControlPlaneQuorum([cluster("prod", ["a", "b"])])).toEqual([
      "prod has 2 control planes; a production stack needs an odd number, at least 3, for etcd quorum",
    ]);
  });

  it("rejects a prod cluster with one control plane", () => {
    expect(prodControlPlaneQuorum([cluster("prod", ["a"])])).toHaveLength(1);
  });

  it("passes three control planes in prod and one in dev", () => {
    expect(prodControlPlaneQuorum([cluster("prod", ["a", "b", "c"]), cluster("dev", ["a"])])).toEqual([]);
  });
});

describe("policy: prod-credentials-expiry", () => {
  const now = new Date("2027-06-01T00:00:00Z");
  const cluster = (stack: string, credentials: unknown) => resource(TYPES.cluster, stack, { credentials }, { stack });
  const cert = (name: string, notAfter: string) => ({ name, subject: "O=os:admin", notAfter, daysLeft: 999 });

  it("fails a prod cluster with a credential 14 days or fewer from its end, or past it, counting from notAfter", () => {
    const credentials = [
      cert("talosconfig client certificate", "2027-06-15T00:00:00.000Z"),
      cert("kubeconfig client certificate", "2027-05-30T12:00:00.000Z"),
      cert("Talos CA", "2036-06-01T00:00:00.000Z"),
    ];
    expect(prodCredentialsExpiry([cluster("prod", credentials)], now)).toEqual([
      "prod: the talosconfig client certificate expires on 2027-06-15, in 14 days: a production stack needs more than 14 days left on every credential; renew it first (docs/operations.md, Credentials)",
      "prod: the kubeconfig client certificate expired on 2027-05-30: a production stack needs more than 14 days left on every credential; renew it first (docs/operations.md, Credentials)",
    ]);
  });

  it("passes 15 days in prod, any date in dev, and a cluster whose credentials are not known yet", () => {
    expect(prodCredentialsExpiry([cluster("prod", [cert("Talos CA", "2027-06-16T00:00:00.000Z")])], now)).toEqual([]);
    expect(prodCredentialsExpiry([cluster("dev", [cert("Talos CA", "2027-05-01T00:00:00.000Z")])], now)).toEqual([]);
    expect(prodCredentialsExpiry([cluster("prod", undefined), cluster("prod", [])], now)).toEqual([]);
  });
});
