import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as talos from "@pulumiverse/talos";
import * as talosnode from "@talos-cluster/talosnode";
import { describe, expect, it } from "vitest";
import { SECRET_OUTPUTS, SECRET_RESULTS, secretOutputsOf, TYPES } from "../lib/tokens";

/** talosnode's schema, which setup generated the SDK from (sdks/talosnode/.built-from). */
function talosnodeSchema(): {
  resources: Record<string, { properties?: Record<string, { secret?: boolean }> }>;
  functions: Record<string, { outputs: { properties: Record<string, { secret?: boolean }> } }>;
} {
  const dir = readFileSync(join(__dirname, "..", "sdks", "talosnode", ".built-from"), "utf8").trim();
  return JSON.parse(readFileSync(join(dir, "schema.json"), "utf8"));
}

describe("type tokens", () => {
  // isInstance compares an object's token with the one the SDK registers its resources under.
  const sdk: [keyof typeof TYPES, { isInstance(obj: unknown): boolean }][] = [
    ["schematic", talos.imagefactory.Schematic],
    ["secrets", talos.machine.Secrets],
    ["pluginConfigApply", talos.machine.ConfigurationApply],
    ["bootstrap", talos.machine.Bootstrap],
    ["pluginKubeconfig", talos.cluster.Kubeconfig],
    ["rollout", talosnode.Rollout],
    ["nodeState", talosnode.NodeState],
    ["kubernetesReady", talosnode.KubernetesReady],
    ["reachable", talosnode.Reachable],
    ["configApply", talosnode.ConfigurationApply],
    ["credentials", talosnode.Credentials],
  ];
  for (const [key, resource] of sdk) {
    it(`names ${key} as its SDK declares it`, () => {
      expect(resource.isInstance({ __pulumiType: TYPES[key] })).toBe(true);
      expect(resource.isInstance({ __pulumiType: `${TYPES[key]}x` })).toBe(false);
    });
  }
});

describe("function tokens", () => {
  it("names machineConfig as the talosnode SDK invokes it", async () => {
    const tokens: string[] = [];
    await pulumi.runtime.setMocks({
      newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
      call: (args) => {
        tokens.push(args.token);
        return { machineConfiguration: "version: v1alpha1\n" };
      },
    });
    await talosnode.getMachineConfiguration({
      clusterName: "lab",
      clusterEndpoint: "https://10.0.0.10:6443",
      machineType: "worker",
      node: "w-1",
      machineSecrets: {
        cluster: { id: "i", secret: "s" },
        secrets: { bootstrapToken: "t" },
        trustdinfo: { token: "t" },
        certs: {
          etcd: { cert: "c", key: "k" },
          k8s: { cert: "c", key: "k" },
          k8sAggregator: { cert: "c", key: "k" },
          k8sServiceaccount: { key: "k" },
          os: { cert: "c", key: "k" },
        },
      },
      talosVersion: "v1.11.5",
      kubernetesVersion: "1.34.1",
    });
    expect(tokens).toEqual([TYPES.machineConfig]);
  });
});

describe("secret outputs", () => {
  it("are marked secret by talosnode itself, for its invokes (which take no additionalSecretOutputs) and resources", () => {
    const schema = talosnodeSchema();
    const listed = [...Object.entries(SECRET_OUTPUTS), ...Object.entries(SECRET_RESULTS)].filter(([type]) => type.startsWith("talosnode:"));
    expect(listed.map(([type]) => type)).toContain(TYPES.machineConfig);
    for (const [type, outputs] of listed) {
      const properties = schema.functions[type]?.outputs.properties ?? schema.resources[type]?.properties ?? {};
      for (const output of outputs) expect({ type, output, secret: properties[output]?.secret }).toEqual({ type, output, secret: true });
    }
  });

  it("name the outputs of a type that carries credentials, and nothing for any other name", () => {
    expect(secretOutputsOf(TYPES.credentials)).toEqual(SECRET_OUTPUTS[TYPES.credentials]);
    expect(secretOutputsOf(TYPES.schematic)).toBeUndefined();
    expect(secretOutputsOf("constructor")).toBeUndefined();
  });
});
