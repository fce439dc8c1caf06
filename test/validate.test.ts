import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config/parse";
import { validatorInput } from "../lib/validate";
import { stackWith } from "./fixtures/stacks";

describe("what Talos' validator is asked to judge", () => {
  const time = { machine: { time: { servers: ["time.example.com"] } } };
  const sysctl = { machine: { sysctls: { "vm.max_map_count": "262144" } } };
  const raw = stackWith({ patches: { all: [time], worker: [sysctl] } });
  (raw.nodes as Record<string, unknown>[])[3] = { ...(raw.nodes as Record<string, unknown>[])[3], patches: [{ machine: { kubelet: {} } }] };
  const input = validatorInput(parseConfig(raw).config);

  it("gives every node its patches in the program's order, each with the stack key a user fixes", () => {
    const worker = input.nodes.find((n) => n.name === "worker-1");
    expect(worker?.patches.map((p) => p.key)).toEqual([
      "(program: cluster settings)",
      "talos-cluster:patches.all[0]",
      "talos-cluster:patches.worker[0]",
      "(program: node worker-1)",
      "talos-cluster:nodes[3] (worker-1).patches[0]",
    ]);
    expect(JSON.parse(worker?.patches[1]?.patch ?? "{}")).toEqual(time);
  });

  it("gives control planes the role's own patches (the VIP) before the stack's, and no worker patch", () => {
    const cp = input.nodes.find((n) => n.name === "cp-1");
    expect(cp?.patches.map((p) => p.key)).toEqual([
      "(program: cluster settings)",
      "talos-cluster:patches.all[0]",
      "(program: controlplane settings)",
      "(program: controlplane settings)",
      "(program: node cp-1)",
    ]);
    expect(cp?.patches.map((p) => p.patch).join("\n")).toContain('"vip":{"ip":"10.0.0.10"}');
  });

  it("asks for the stack's cluster, endpoint and releases, the release standing in for the config contract", () => {
    expect(input).toMatchObject({
      clusterName: "lab",
      endpoint: "https://10.0.0.10:6443",
      talosVersion: "v1.11.5",
      contract: "v1.11.5",
      kubernetesVersion: "1.34.1",
    });
  });
});
