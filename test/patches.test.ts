import { describe, expect, it } from "vitest";
import { parseConfig } from "../components/config";
import { clusterPatches, controlPlanePatches, nodePatches, serialisePatches, workerPatches } from "../components/patches";
import { stackWith, validStack } from "./fixtures/stacks";

const INSTALLER = "factory.talos.dev/installer/abc123:v1.11.5";
const configOf = (raw: Record<string, unknown>) => parseConfig(raw).config;

describe("cluster patches", () => {
  it("turn off Talos' own CNI and kube-proxy when Cilium is the CNI", () => {
    const [base] = clusterPatches(configOf(validStack()));
    expect(base).toMatchObject({ cluster: { network: { cni: { name: "none" } }, proxy: { disabled: true } } });
  });

  it("keep Talos' default CNI and kube-proxy when Cilium is switched off", () => {
    const [base] = clusterPatches(configOf(stackWith({ addons: { cilium: { enabled: false } } })));
    const cluster = (base as { cluster: Record<string, unknown> }).cluster;
    expect(cluster.proxy).toBeUndefined();
    expect((cluster.network as Record<string, unknown>).cni).toBeUndefined();
  });

  it("enable kubelet serving-certificate rotation only with the approver installed", () => {
    const on = clusterPatches(configOf(validStack()))[0] as { machine: Record<string, unknown> };
    expect(on.machine.kubelet).toEqual({ extraArgs: { "rotate-server-certificates": "true" } });
    const off = clusterPatches(configOf(stackWith({ addons: { kubeletServingCertApprover: { enabled: false } } })))[0] as {
      machine: Record<string, unknown>;
    };
    expect(off.machine.kubelet).toBeUndefined();
  });

  it("carry the pod and service ranges and the endpoint as a certificate SAN", () => {
    const [base] = clusterPatches(configOf(validStack()));
    expect(base).toMatchObject({
      machine: { certSANs: ["10.0.0.10"] },
      cluster: { network: { podSubnets: ["10.244.0.0/16"], serviceSubnets: ["10.96.0.0/12"] } },
    });
  });

  it("append the stack's patches for all nodes after the built-in ones", () => {
    const userPatch = { machine: { time: { servers: ["time.example.com"] } } };
    const patches = clusterPatches(configOf(stackWith({ patches: { all: [userPatch] } })));
    expect(patches.at(-1)).toEqual(userPatch);
  });
});

describe("role patches", () => {
  it("put the VIP on control planes only", () => {
    const config = configOf(validStack());
    expect(controlPlanePatches(config)).toContainEqual({
      machine: { network: { interfaces: [{ interface: "eth0", dhcp: true, vip: { ip: "10.0.0.10" } }] } },
    });
    expect(JSON.stringify(workerPatches(config))).not.toContain("vip");
  });

  it("add the endpoint to the API server certificate on control planes", () => {
    expect(controlPlanePatches(configOf(validStack()))[0]).toEqual({ cluster: { apiServer: { certSANs: ["10.0.0.10"] } } });
  });

  it("allow workloads on control planes when the cluster has no workers", () => {
    const raw = stackWith({
      network: {},
      endpoint: "10.0.0.11",
      nodes: [{ name: "cp-1", address: "10.0.0.11", role: "controlplane", installDisk: "/dev/sda" }],
    });
    expect(controlPlanePatches(configOf(raw))[0]).toMatchObject({ cluster: { allowSchedulingOnControlPlanes: true } });
    expect(controlPlanePatches(configOf(validStack()))[0]).not.toHaveProperty("cluster.allowSchedulingOnControlPlanes");
  });

  it("append the stack's worker patches to workers", () => {
    const userPatch = { machine: { sysctls: { "vm.max_map_count": "262144" } } };
    expect(workerPatches(configOf(stackWith({ patches: { worker: [userPatch] } })))).toEqual([userPatch]);
  });
});

describe("node patches", () => {
  const config = configOf(validStack());
  const [cp1, , , worker] = config.nodes;
  if (!cp1 || !worker) throw new Error("fixture changed");

  it("set the hostname, the install disk and the factory installer image", () => {
    expect(nodePatches(cp1, INSTALLER)[0]).toEqual({
      machine: { network: { hostname: "cp-1" }, install: { image: INSTALLER, disk: "/dev/nvme0n1" } },
    });
  });

  it("use a disk selector when the node gives one", () => {
    const node = { ...cp1, installDisk: undefined, installDiskSelector: { type: "nvme" as const } };
    expect(nodePatches(node, INSTALLER)[0]).toMatchObject({ machine: { install: { diskSelector: { type: "nvme" } } } });
  });

  it("turn labels and taints into Talos nodeLabels and nodeTaints", () => {
    expect(nodePatches(worker, INSTALLER)[0]).toMatchObject({
      machine: { nodeLabels: { "node.kubernetes.io/pool": "general" }, nodeTaints: { dedicated: "batch:NoSchedule" } },
    });
  });

  it("apply the node's own patches last so they can override the rest", () => {
    const own = { machine: { install: { wipe: true } } };
    expect(nodePatches({ ...cp1, patches: [own] }, INSTALLER).at(-1)).toEqual(own);
  });

  it("serialise to the same text for the same config, whatever the order labels were given in", () => {
    const a = { ...worker, labels: { b: "2", a: "1" } };
    const b = { ...worker, labels: { a: "1", b: "2" } };
    expect(serialisePatches(nodePatches(a, INSTALLER))).toEqual(serialisePatches(nodePatches(b, INSTALLER)));
  });
});
