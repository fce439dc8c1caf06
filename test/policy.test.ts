import { describe, expect, it } from "vitest";
import {
  credentialsSecret,
  installImagesFromSchematic,
  type PlannedResource,
  prodControlPlaneQuorum,
  schematicHasIntelUcode,
  schematicIdOf,
  secretsProtected,
  TYPES,
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
const apply = (name: string, image?: string) =>
  resource(TYPES.configApply, name, {
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
    expect(credentialsSecret(resource(TYPES.kubeconfig, "prod-kubeconfig", {}, { additionalSecretOutputs: ["kubeconfigRaw"] }))).toBe(
      "prod-kubeconfig must list kubernetesClientConfiguration, clientConfiguration in additionalSecretOutputs: they carry cluster credentials",
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

  it("rejects a node with no install image", () => {
    expect(installImagesFromSchematic([apply("cp-1")])).toEqual([
      "cp-1 sets no machine.install.image: the node would install an image without the schematic's extensions",
    ]);
  });

  it("derives the schematic's id from its text, since a policy sees no resource ids", () => {
    expect(schematicIdOf(schematic(["siderolabs/intel-ucode"]).props.schematic)).toBe(ID);
    expect(schematicIdOf("customization:\n  meta: [{key: 10, value: x}]\n")).toBeUndefined();
  });

  it("skips a node whose patches are not known yet (first preview)", () => {
    expect(installImagesFromSchematic([resource(TYPES.configApply, "cp-1", {})])).toEqual([]);
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
