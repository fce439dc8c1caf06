import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config/parse";
import { clusterPatches, controlPlanePatches, nodePatches, serialisePatches, workerPatches } from "../lib/patches";
import { stackWith, validStack } from "./fixtures/stacks";

const CONTRACT = "v1.11.5";
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
  it("put the VIP on control planes only, on the named link, keeping DHCP on it", () => {
    const config = configOf(validStack());
    expect(controlPlanePatches(config)).toContainEqual({
      machine: { network: { interfaces: [{ interface: "enp1s0", dhcp: true, vip: { ip: "10.0.0.10" } }] } },
    });
    expect(JSON.stringify(workerPatches(config))).not.toContain("vip");
  });

  it("leave the link's addressing to the control planes' patches when the stack turns DHCP off", () => {
    const vip = { address: "10.0.0.10", interface: "enp1s0", dhcp: false };
    const nodes = (validStack().nodes as Record<string, unknown>[]).map((n) =>
      n.role === "controlplane"
        ? { ...n, patches: [{ machine: { network: { interfaces: [{ interface: "enp1s0", addresses: [`${String(n.address)}/24`] }] } } }] }
        : n,
    );
    const config = configOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip }, nodes }));
    expect(controlPlanePatches(config)).toContainEqual({
      machine: { network: { interfaces: [{ interface: "enp1s0", vip: { ip: "10.0.0.10" } }] } },
    });
  });

  it("find the VIP's link by device selector when the stack gives one", () => {
    const vip = { address: "10.0.0.10", deviceSelector: { busPath: "0000:01:00.0", physical: true } };
    const config = configOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip } }));
    expect(controlPlanePatches(config)).toContainEqual({
      machine: {
        network: { interfaces: [{ deviceSelector: { busPath: "0000:01:00.0", physical: true }, dhcp: true, vip: { ip: "10.0.0.10" } }] },
      },
    });
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
    expect(nodePatches(cp1, INSTALLER, CONTRACT)[0]).toEqual({
      machine: { network: { hostname: "cp-1" }, install: { image: INSTALLER, disk: "/dev/nvme0n1" } },
    });
  });

  it("use a disk selector when the node gives one", () => {
    const node = { ...cp1, installDisk: undefined, installDiskSelector: { type: "nvme" as const } };
    expect(nodePatches(node, INSTALLER, CONTRACT)[0]).toMatchObject({ machine: { install: { diskSelector: { type: "nvme" } } } });
  });

  it("register a worker with its taints through the kubelet, since NodeRestriction refuses a kubelet's taint changes", () => {
    const machine = (nodePatches(worker, INSTALLER, CONTRACT)[0] as { machine: Record<string, unknown> }).machine;
    expect(machine.nodeLabels).toEqual({ "node.kubernetes.io/pool": "general" });
    expect(machine.kubelet).toEqual({ extraConfig: { registerWithTaints: [{ key: "dedicated", value: "batch", effect: "NoSchedule" }] } });
    expect(machine.nodeTaints).toBeUndefined();
  });

  it("taint a control plane through Talos' nodeTaints, which it applies with admin credentials", () => {
    const taints = [
      { key: "dedicated", value: "etcd", effect: "NoSchedule" as const },
      { key: "a", effect: "NoExecute" as const },
    ];
    expect(nodePatches({ ...cp1, taints }, INSTALLER, CONTRACT)[0]).toMatchObject({
      machine: { nodeTaints: { a: "NoExecute", dedicated: "etcd:NoSchedule" } },
    });
    expect(nodePatches({ ...cp1, taints }, INSTALLER, CONTRACT)[0]).not.toHaveProperty("machine.kubelet");
  });

  it("name a node in a HostnameConfig document, auto off, once both the contract and the plugin's config library are 1.12", () => {
    const patches = nodePatches(cp1, INSTALLER, "v1.12.0", "1.12");
    expect(patches[0]).not.toHaveProperty("machine.network");
    expect(patches[1]).toEqual({ apiVersion: "v1alpha1", kind: "HostnameConfig", auto: "off", hostname: "cp-1" });
  });

  it("keep machine.network.hostname for a 1.11 contract, and with the bundled 1.9 library whatever the contract", () => {
    expect(nodePatches(cp1, INSTALLER, "v1.11.5", "1.12")[0]).toHaveProperty("machine.network.hostname", "cp-1");
    expect(nodePatches(cp1, INSTALLER, "v1.12.0")[0]).toHaveProperty("machine.network.hostname", "cp-1");
    expect(nodePatches(cp1, INSTALLER, "v1.12.0")).toHaveLength(1);
  });

  it("apply the node's own patches last so they can override the rest", () => {
    const own = { machine: { install: { wipe: true } } };
    expect(nodePatches({ ...cp1, patches: [own] }, INSTALLER, CONTRACT).at(-1)).toEqual(own);
  });

  it("serialise to the same text for the same config, whatever the order labels were given in", () => {
    const a = { ...worker, labels: { b: "2", a: "1" } };
    const b = { ...worker, labels: { a: "1", b: "2" } };
    expect(serialisePatches(nodePatches(a, INSTALLER, CONTRACT))).toEqual(serialisePatches(nodePatches(b, INSTALLER, CONTRACT)));
  });
});
