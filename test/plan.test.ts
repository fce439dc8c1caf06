import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config/parse";
import { type ClusterPlan, planCluster } from "../lib/plan";
import { schematicFor } from "../lib/schematic";
import { stackWith, validStack } from "./fixtures/stacks";

const CONTRACT = "v1.11.5";

describe("cluster plan", () => {
  const { config } = parseConfig(validStack());
  const plan = planCluster("lab", config);
  // The factory installer of the stack's schematic (its extensions and intel-ucode).
  const INSTALLER = `factory.talos.dev/installer/${schematicFor(config.extensions).id}:v1.11.5`;

  it("plans one config apply per node, named from the cluster and the node, with the node's role", () => {
    expect(plan.nodes.map((n) => [n.resourceName, n.role])).toEqual([
      ["lab-cp-1", "controlplane"],
      ["lab-cp-2", "controlplane"],
      ["lab-cp-3", "controlplane"],
      ["lab-worker-1", "worker"],
    ]);
  });

  it("bootstraps the first control plane in the stack's order, even when a worker is listed first", () => {
    const raw = validStack();
    const nodes = raw.nodes as Record<string, unknown>[];
    const reordered = stackWith({ nodes: [nodes[3], nodes[1], nodes[0], nodes[2]] });
    expect(planCluster("lab", parseConfig(reordered).config).bootstrapNode.name).toBe("cp-2");
    expect(plan.bootstrapNode.name).toBe("cp-1");
  });

  it("lists the control planes as talosconfig endpoints and no default target nodes", () => {
    expect(plan.talosconfig).toEqual({ endpoints: ["10.0.0.11", "10.0.0.12", "10.0.0.13"] });
  });

  /** A node's patches as the program applies them, as objects. */
  const patchesOf = (p: ClusterPlan, name: string) =>
    (p.nodes.find((n) => n.name === name)?.patches(CONTRACT) ?? []).map((k) => JSON.parse(k.patch));

  it("gives the VIP only to control planes", () => {
    expect(JSON.stringify(patchesOf(plan, "cp-1"))).toContain('"vip":{"ip":"10.0.0.10"}');
    expect(JSON.stringify(patchesOf(plan, "worker-1"))).not.toContain("vip");
  });

  it("puts the cluster-wide patches first in both roles", () => {
    expect(patchesOf(plan, "cp-1")[0]).toEqual(patchesOf(plan, "worker-1")[0]);
    expect(patchesOf(plan, "worker-1")[0]).toHaveProperty("cluster.network.cni.name", "none");
  });

  it("gives every node the factory installer image in its own patches, after the role's", () => {
    for (const node of plan.nodes) {
      expect(node.installerImage).toBe(INSTALLER);
      const own = node.patches(CONTRACT).find((k) => k.key === `(program: node ${node.name})`);
      const first = JSON.parse(own?.patch ?? "{}");
      expect(first.machine.install.image).toBe(INSTALLER);
      expect(first.machine.network.hostname).toBe(node.name);
    }
  });

  it("installs the image it is given instead, in every node's patches", () => {
    const image = "registry.example.com/installer:v1.11.5";
    for (const node of planCluster("lab", config, image).nodes) {
      expect(node.installerImage).toBe(image);
      expect(
        node
          .patches(CONTRACT)
          .map((k) => k.patch)
          .join("\n"),
      ).toContain(`"image":"${image}"`);
    }
  });

  it("changes only the edited node's patches when one node's patch changes", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[1] = {
      ...(raw.nodes as Record<string, unknown>[])[1],
      patches: [{ machine: { sysctls: { "net.core.somaxconn": "65535" } } }],
    };
    const edited = planCluster("lab", parseConfig(raw).config);
    const changed = edited.nodes.filter((n, i) => JSON.stringify(n.patches(CONTRACT)) !== JSON.stringify(plan.nodes[i]?.patches(CONTRACT)));
    expect(changed.map((n) => n.name)).toEqual(["cp-2"]);
  });
});
