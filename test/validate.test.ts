import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config/parse";
import { judgeWithTalos, validatorInput } from "../lib/validate";
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

describe("Talos' validator on the program's configs, for the v1alpha1 shape (1.11) and 1.14's documents", () => {
  const nodes = [
    { name: "cp-1", address: "10.0.0.11", role: "controlplane", installDisk: "/dev/nvme0n1", labels: { zone: "a" } },
    { name: "cp-2", address: "10.0.0.12", role: "controlplane", installDisk: "/dev/sda", taints: [{ key: "etcd", effect: "NoSchedule" }] },
    { name: "cp-3", address: "10.0.0.13", role: "controlplane", installDiskSelector: { type: "nvme" } },
    {
      name: "worker-1",
      address: "10.0.0.21",
      role: "worker",
      installDiskSelector: { type: "ssd" },
      labels: { "node.kubernetes.io/pool": "general" },
      taints: [{ key: "dedicated", value: "batch", effect: "NoSchedule" }],
    },
    { name: "worker-2", address: "10.0.0.22", role: "worker", installDisk: "/dev/sdb" },
  ];
  const judge = (talosVersion: string, kubernetesVersion: string, cilium: boolean) =>
    judgeWithTalos(parseConfig(stackWith({ talosVersion, kubernetesVersion, nodes, addons: { cilium: { enabled: cilium } } })).config);

  it.each([true, false])("accepts a 3+2 stack of Talos v1.11.5 (Cilium %s)", (cilium) => {
    expect(judge("v1.11.5", "1.34.1", cilium)).toEqual({ problems: [], warnings: [] });
  });

  it.each([true, false])("finds no conflict with the documents Talos 1.14 generates in a 3+2 stack of v1.14.1 (Cilium %s)", (cilium) => {
    expect(judge("v1.14.1", "1.37.0", cilium)).toEqual({ problems: [], warnings: [] });
  });

  it("refuses a feature gate the declared Kubernetes removed, naming the patch's stack key (go-kubernetes' table)", () => {
    const gate = { cluster: { apiServer: { extraArgs: { "feature-gates": "PodDisruptionConditions=true" } } } };
    const judged = (kubernetesVersion: string) =>
      judgeWithTalos(
        parseConfig(stackWith({ talosVersion: "v1.11.5", kubernetesVersion, nodes, patches: { controlplane: [gate] } })).config,
      );
    expect(judged("1.34.1").problems).toEqual([
      "talos-cluster:patches.controlplane[0]: cluster.apiServer.extraArgs: feature gate PodDisruptionConditions was removed in Kubernetes 1.34; remove it (go-kubernetes upgrade checks)",
    ]);
    expect(judged("1.33.4").problems).toEqual([]);
  });
});
