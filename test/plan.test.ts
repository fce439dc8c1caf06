import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config/parse";
import { nodeConfigPatches, planCluster } from "../lib/plan";
import { stackWith, validStack } from "./fixtures/stacks";

const CONTRACT = "v1.11.5";
const INSTALLER = "factory.talos.dev/installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.11.5";

describe("cluster plan", () => {
  const { config } = parseConfig(validStack());
  const plan = planCluster("lab", config);

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

  it("gives the VIP only to the control-plane machine configuration", () => {
    expect(plan.roleConfigPatches.controlplane.join("\n")).toContain('"vip":{"ip":"10.0.0.10"}');
    expect(plan.roleConfigPatches.worker.join("\n")).not.toContain("vip");
  });

  it("puts the cluster-wide patches first in both roles", () => {
    expect(plan.roleConfigPatches.controlplane[0]).toBe(plan.roleConfigPatches.worker[0]);
    expect(JSON.parse(plan.roleConfigPatches.worker[0] ?? "{}")).toHaveProperty("cluster.network.cni.name", "none");
  });

  it("gives every node the factory installer image in its own patches", () => {
    for (const node of config.nodes) {
      const first = JSON.parse(nodeConfigPatches(node, INSTALLER, CONTRACT)[0] ?? "{}");
      expect(first.machine.install.image).toBe(INSTALLER);
      expect(first.machine.network.hostname).toBe(node.name);
    }
  });

  it("changes only the edited node's patches when one node's patch changes", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[1] = {
      ...(raw.nodes as Record<string, unknown>[])[1],
      patches: [{ machine: { sysctls: { "net.core.somaxconn": "65535" } } }],
    };
    const edited = parseConfig(raw).config;
    const changed = edited.nodes.filter((n, i) => {
      const before = config.nodes[i];
      return (
        before === undefined ||
        JSON.stringify(nodeConfigPatches(n, INSTALLER, CONTRACT)) !== JSON.stringify(nodeConfigPatches(before, INSTALLER, CONTRACT))
      );
    });
    expect(changed.map((n) => n.name)).toEqual(["cp-2"]);
    expect(planCluster("lab", edited).roleConfigPatches).toEqual(plan.roleConfigPatches);
  });
});
