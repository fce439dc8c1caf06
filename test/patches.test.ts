import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config/parse";
import { clusterPatches, controlPlanePatches, kubernetesInDocuments, nodePatches, serialisePatches, workerPatches } from "../lib/patches";
import { stackWith, validStack } from "./fixtures/stacks";

const CONTRACT = "v1.11.5";
const INSTALLER = "factory.talos.dev/installer/abc123:v1.11.5";
const configOf = (raw: Record<string, unknown>) => parseConfig(raw).config;

describe("cluster patches", () => {
  it("turn off Talos' own CNI and kube-proxy when Cilium is the CNI", () => {
    const [base] = clusterPatches(configOf(validStack()), CONTRACT);
    expect(base).toMatchObject({ cluster: { network: { cni: { name: "none" } }, proxy: { disabled: true } } });
  });

  it("keep Talos' default CNI and kube-proxy when Cilium is switched off", () => {
    const [base] = clusterPatches(configOf(stackWith({ addons: { cilium: { enabled: false } } })), CONTRACT);
    const cluster = (base as { cluster: Record<string, unknown> }).cluster;
    expect(cluster.proxy).toBeUndefined();
    expect((cluster.network as Record<string, unknown>).cni).toBeUndefined();
  });

  it("enable kubelet serving-certificate rotation only with the approver installed", () => {
    const on = clusterPatches(configOf(validStack()), CONTRACT)[0] as { machine: Record<string, unknown> };
    expect(on.machine.kubelet).toEqual({ extraArgs: { "rotate-server-certificates": "true" } });
    const off = clusterPatches(configOf(stackWith({ addons: { kubeletServingCertApprover: { enabled: false } } })), CONTRACT)[0] as {
      machine: Record<string, unknown>;
    };
    expect(off.machine.kubelet).toBeUndefined();
  });

  it("carry the pod and service ranges and the endpoint as a certificate SAN", () => {
    const [base] = clusterPatches(configOf(validStack()), CONTRACT);
    expect(base).toMatchObject({
      machine: { certSANs: ["10.0.0.10"] },
      cluster: { network: { podSubnets: ["10.244.0.0/16"], serviceSubnets: ["10.96.0.0/12"] } },
    });
  });

  it("append the stack's patches for all nodes after the built-in ones", () => {
    const userPatch = { machine: { time: { servers: ["time.example.com"] } } };
    const patches = clusterPatches(configOf(stackWith({ patches: { all: [userPatch] } })), CONTRACT);
    expect(patches.at(-1)).toEqual(userPatch);
  });
});

describe("role patches", () => {
  it("put the VIP on control planes only, on the named link, keeping DHCP on it", () => {
    const config = configOf(validStack());
    expect(controlPlanePatches(config, CONTRACT)).toContainEqual({
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
    expect(controlPlanePatches(config, CONTRACT)).toContainEqual({
      machine: { network: { interfaces: [{ interface: "enp1s0", vip: { ip: "10.0.0.10" } }] } },
    });
  });

  it("find the VIP's link by device selector when the stack gives one", () => {
    const vip = { address: "10.0.0.10", deviceSelector: { busPath: "0000:01:00.0", physical: true } };
    const config = configOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip } }));
    expect(controlPlanePatches(config, CONTRACT)).toContainEqual({
      machine: {
        network: { interfaces: [{ deviceSelector: { busPath: "0000:01:00.0", physical: true }, dhcp: true, vip: { ip: "10.0.0.10" } }] },
      },
    });
  });

  it("add the endpoint to the API server certificate on control planes", () => {
    expect(controlPlanePatches(configOf(validStack()), CONTRACT)[0]).toEqual({ cluster: { apiServer: { certSANs: ["10.0.0.10"] } } });
  });

  it("allow workloads on control planes when the cluster has no workers", () => {
    const raw = stackWith({
      network: {},
      endpoint: "10.0.0.11",
      nodes: [{ name: "cp-1", address: "10.0.0.11", role: "controlplane", installDisk: "/dev/sda" }],
    });
    expect(controlPlanePatches(configOf(raw), CONTRACT)[0]).toMatchObject({ cluster: { allowSchedulingOnControlPlanes: true } });
    expect(controlPlanePatches(configOf(validStack()), CONTRACT)[0]).not.toHaveProperty("cluster.allowSchedulingOnControlPlanes");
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

  it("name a node in a HostnameConfig document, auto off, once both the contract and the config library are 1.12", () => {
    const patches = nodePatches(cp1, INSTALLER, "v1.12.0", "1.12");
    expect(patches[0]).not.toHaveProperty("machine.network");
    expect(patches[1]).toEqual({ apiVersion: "v1alpha1", kind: "HostnameConfig", auto: "off", hostname: "cp-1" });
    expect(nodePatches(cp1, INSTALLER, "v1.13.9")[1]).toMatchObject({ kind: "HostnameConfig", hostname: "cp-1" });
  });

  it("keep machine.network.hostname for a 1.11 contract, and with a 1.9 library whatever the contract", () => {
    expect(nodePatches(cp1, INSTALLER, "v1.11.5")[0]).toHaveProperty("machine.network.hostname", "cp-1");
    expect(nodePatches(cp1, INSTALLER, "v1.12.0", "1.9")[0]).toHaveProperty("machine.network.hostname", "cp-1");
    expect(nodePatches(cp1, INSTALLER, "v1.12.0", "1.9")).toHaveLength(1);
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

describe("patches for a Talos 1.14 contract, whose config keeps Kubernetes settings in documents of their own", () => {
  const V114 = "v1.14.1";
  const config = configOf(validStack());
  const [cp1, , , worker] = config.nodes;
  if (!cp1 || !worker) throw new Error("fixture changed");
  const doc = (kind: string, body: Record<string, unknown>) => ({ apiVersion: "v1alpha1", kind, ...body });
  const v1alpha1Only = (patches: Record<string, unknown>[]) => patches.filter((p) => p.kind === undefined);

  it("switch shape at the 1.14 contract, and only with a 1.14 library", () => {
    expect(kubernetesInDocuments("v1.14.1")).toBe(true);
    expect(kubernetesInDocuments("v1.13.9")).toBe(false);
    expect(kubernetesInDocuments("v1.14.1", "1.13")).toBe(false);
  });

  it("give the pod and service ranges and the kubelet's certificate rotation to KubeNetworkConfig and KubeletConfig", () => {
    const patches = clusterPatches(config, V114);
    expect(patches).toEqual([
      { machine: { certSANs: ["10.0.0.10"] } },
      doc("KubeNetworkConfig", { podSubnets: ["10.244.0.0/16"], serviceSubnets: ["10.96.0.0/12"] }),
      doc("KubeletConfig", { extraArgs: { "rotate-server-certificates": "true" } }),
    ]);
    const off = clusterPatches(configOf(stackWith({ addons: { kubeletServingCertApprover: { enabled: false } } })), V114);
    expect(off.map((p) => p.kind)).toEqual([undefined, "KubeNetworkConfig"]);
  });

  it("turn off flannel and kube-proxy on control planes (the only configs carrying them) when Cilium is the CNI", () => {
    const patches = controlPlanePatches(config, V114);
    expect(patches).toContainEqual(doc("KubeProxyConfig", { enabled: false }));
    expect(patches).toContainEqual(doc("KubeFlannelCNIConfig", { $patch: "delete" }));
    expect(patches).toContainEqual(doc("KubeAPIServerConfig", { certExtraSANs: ["10.0.0.10"] }));
    expect(JSON.stringify(v1alpha1Only(patches))).not.toContain("cluster");
    const plain = controlPlanePatches(configOf(stackWith({ addons: { cilium: { enabled: false } } })), V114);
    expect(plain.map((p) => p.kind)).not.toContain("KubeProxyConfig");
    expect(plain.map((p) => p.kind)).not.toContain("KubeFlannelCNIConfig");
  });

  it("remove only Talos' control-plane taint when the cluster has no workers", () => {
    const raw = stackWith({
      network: {},
      endpoint: "10.0.0.11",
      nodes: [{ name: "cp-1", address: "10.0.0.11", role: "controlplane", installDisk: "/dev/sda" }],
    });
    const untaint = doc("KubeNodeConfig", { taints: { "node-role.kubernetes.io/control-plane": { $patch: "delete" } } });
    expect(controlPlanePatches(configOf(raw), V114)).toContainEqual(untaint);
    expect(controlPlanePatches(config, V114)).not.toContainEqual(untaint);
  });

  it("put a node's labels and a control plane's taints in KubeNodeConfig, a worker's taints in the kubelet's registration", () => {
    const taints = [{ key: "dedicated", value: "etcd", effect: "NoSchedule" as const }];
    const cp = nodePatches({ ...cp1, labels: { zone: "a" }, taints }, INSTALLER, V114);
    expect(cp).toContainEqual(doc("KubeNodeConfig", { labels: { zone: "a" }, taints: { dedicated: "etcd:NoSchedule" } }));
    const w = nodePatches(worker, INSTALLER, V114);
    expect(w).toContainEqual(doc("KubeNodeConfig", { labels: { "node.kubernetes.io/pool": "general" } }));
    expect(w).toContainEqual(
      doc("KubeletConfig", { config: { registerWithTaints: [{ key: "dedicated", value: "batch", effect: "NoSchedule" }] } }),
    );
    for (const p of [...cp, ...w]) expect(p).not.toHaveProperty("machine.nodeLabels");
    for (const p of [...cp, ...w]) expect(p).not.toHaveProperty("machine.kubelet");
  });

  it("keep the install in machine.install and name the node in HostnameConfig", () => {
    const [machine, hostname] = nodePatches(cp1, INSTALLER, V114);
    expect(machine).toEqual({ machine: { install: { image: INSTALLER, disk: "/dev/nvme0n1" } } });
    expect(hostname).toEqual(doc("HostnameConfig", { auto: "off", hostname: "cp-1" }));
  });
});
