import * as talos from "@pulumiverse/talos";
import * as talosnode from "@talos-cluster/talosnode";
import { describe, expect, it } from "vitest";
import { SECRET_OUTPUTS, secretOutputsOf, TYPES } from "../lib/tokens";

describe("type tokens", () => {
  // isInstance compares an object's token with the one the SDK registers its resources under.
  const sdk: [keyof typeof TYPES, { isInstance(obj: unknown): boolean }][] = [
    ["schematic", talos.imagefactory.Schematic],
    ["secrets", talos.machine.Secrets],
    ["pluginConfigApply", talos.machine.ConfigurationApply],
    ["bootstrap", talos.machine.Bootstrap],
    ["kubeconfig", talos.cluster.Kubeconfig],
    ["rollout", talosnode.Rollout],
    ["nodeState", talosnode.NodeState],
    ["kubernetesReady", talosnode.KubernetesReady],
    ["reachable", talosnode.Reachable],
    ["configApply", talosnode.ConfigurationApply],
  ];
  for (const [key, resource] of sdk) {
    it(`names ${key} as its SDK declares it`, () => {
      expect(resource.isInstance({ __pulumiType: TYPES[key] })).toBe(true);
      expect(resource.isInstance({ __pulumiType: `${TYPES[key]}x` })).toBe(false);
    });
  }
});

describe("secret outputs", () => {
  it("name the outputs of a type that carries credentials, and nothing for any other name", () => {
    expect(secretOutputsOf(TYPES.kubeconfig)).toEqual(SECRET_OUTPUTS[TYPES.kubeconfig]);
    expect(secretOutputsOf(TYPES.schematic)).toBeUndefined();
    expect(secretOutputsOf("constructor")).toBeUndefined();
  });
});
