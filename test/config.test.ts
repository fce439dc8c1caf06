import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../lib/config/parse";
import { configFromPulumi, configFromStackFile } from "../lib/config/source";
import { stackWith, validStack } from "./fixtures/stacks";

/** The problems a config is refused with (fails the test if it is accepted). */
function problemsOf(raw: Record<string, unknown>): string[] {
  try {
    parseConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("config was accepted");
}

describe("stack config: accepted shapes and defaults", () => {
  it("accepts a valid HA stack and splits control planes from workers", () => {
    const { config, warnings } = parseConfig(validStack());
    expect(config.controlPlanes.map((n) => n.name)).toEqual(["cp-1", "cp-2", "cp-3"]);
    expect(config.workers.map((n) => n.name)).toEqual(["worker-1"]);
    expect(warnings).toEqual([]);
  });

  it("normalises a bare endpoint address to https on port 6443", () => {
    const { config } = parseConfig(validStack());
    expect(config.endpoint).toBe("https://10.0.0.10:6443");
    expect(config.endpointHost).toBe("10.0.0.10");
  });

  it("keeps an explicit https endpoint with its port", () => {
    const raw = stackWith({ endpoint: "https://k8s.example.com:443", network: {} });
    expect(parseConfig(raw).config.endpoint).toBe("https://k8s.example.com:443");
  });

  it("fills pinned defaults for versions, networks and addons", () => {
    const raw = validStack();
    delete raw.talosVersion;
    delete raw.kubernetesVersion;
    const { config } = parseConfig({ ...raw, network: {}, endpoint: "k8s.lab.example" });
    // Talos 1.14.1 and its own default Kubernetes (machinery's constants.DefaultKubernetesVersion).
    expect(config.talosVersion).toBe("v1.14.1");
    expect(config.kubernetesVersion).toBe("1.37.0");
    expect(config.network.podSubnets).toEqual(["10.244.0.0/16"]);
    expect(config.network.serviceSubnets).toEqual(["10.96.0.0/12"]);
    expect(config.addons.cilium.enabled).toBe(true);
    expect(config.addons.metricsServer.enabled).toBe(true);
    expect(config.imageFactoryHost).toBe("factory.talos.dev");
  });

  it("reads structured values from Pulumi's JSON-encoded config map", () => {
    const raw = configFromPulumi({
      "talos-cluster:clusterName": "lab",
      "talos-cluster:nodes": JSON.stringify([{ name: "cp-1", address: "10.0.0.11", role: "controlplane" }]),
      "talos:imageFactoryUrl": "http://127.0.0.1:8080",
      "talos:otherSetting": "x",
    });
    expect(raw).toEqual({
      clusterName: "lab",
      nodes: [{ name: "cp-1", address: "10.0.0.11", role: "controlplane" }],
      "talos:imageFactoryUrl": "http://127.0.0.1:8080",
    });
  });

  it("reads the talos plugin's factory URL from a stack file too, and no other key of its namespace", () => {
    const raw = configFromStackFile(
      "config:\n  talos:imageFactoryUrl: https://factory.internal.example\n  talos:otherSetting: x\n  talos-cluster:clusterName: lab\n",
    );
    expect(raw).toEqual({ clusterName: "lab", "talos:imageFactoryUrl": "https://factory.internal.example" });
  });
});

describe("stack config: one Image Factory for the schematic and the installer", () => {
  it("installs from the host of talos:imageFactoryUrl when imageFactoryHost is not set", () => {
    expect(parseConfig(stackWith({ "talos:imageFactoryUrl": "http://10.0.0.5:8080" })).config.imageFactoryHost).toBe("10.0.0.5:8080");
    expect(parseConfig(stackWith({ "talos:imageFactoryUrl": "https://Factory.Internal.example/" })).config.imageFactoryHost).toBe(
      "factory.internal.example",
    );
  });

  it("keeps imageFactoryHost set on purpose when it names the same factory, with or without the default port", () => {
    for (const host of ["factory.internal.example", "factory.internal.example:443"]) {
      const raw = stackWith({ "talos:imageFactoryUrl": "https://factory.internal.example", imageFactoryHost: host });
      expect(parseConfig(raw).config.imageFactoryHost).toBe(host);
    }
  });

  it("keeps the public factory, or imageFactoryHost alone (a registry mirror), when talos:imageFactoryUrl is not set", () => {
    expect(parseConfig(validStack()).config.imageFactoryHost).toBe("factory.talos.dev");
    expect(parseConfig(stackWith({ imageFactoryHost: "mirror.example:5000" })).config.imageFactoryHost).toBe("mirror.example:5000");
  });

  it("refuses an imageFactoryHost that is not the factory of talos:imageFactoryUrl, naming both keys", () => {
    const problems = problemsOf(stackWith({ "talos:imageFactoryUrl": "http://10.0.0.5:8080", imageFactoryHost: "factory.talos.dev" }));
    expect(problems).toEqual([
      'talos-cluster:imageFactoryHost: "factory.talos.dev" is not the factory of talos:imageFactoryUrl ("http://10.0.0.5:8080", host 10.0.0.5:8080): ' +
        "nodes would install an image from a factory that never registered the schematic. " +
        "Remove talos-cluster:imageFactoryHost to follow talos:imageFactoryUrl, or set both to the same factory",
    ]);
  });

  it("refuses a talos:imageFactoryUrl that is not an http(s) URL of a host", () => {
    for (const url of ["factory.internal.example", "ftp://factory.internal.example", 8080]) {
      expect(problemsOf(stackWith({ "talos:imageFactoryUrl": url }))).toEqual([
        `talos:imageFactoryUrl: ${JSON.stringify(url)} is not the URL of an Image Factory, e.g. https://factory.talos.dev or http://10.0.0.5:8080`,
      ]);
    }
  });
});

describe("stack config: every problem is reported at once", () => {
  it("lists missing required keys together, naming each", () => {
    const problems = problemsOf({});
    expect(problems).toContain("talos-cluster:clusterName: is required: a name for the cluster, e.g. prod-eu1");
    expect(problems.some((p) => p.startsWith("talos-cluster:endpoint: is required"))).toBe(true);
    expect(problems.some((p) => p.startsWith("talos-cluster:nodes: is required"))).toBe(true);
  });

  it("reports several unrelated problems in one run", () => {
    const raw = validStack();
    const nodes = raw.nodes as Record<string, unknown>[];
    nodes[1] = { ...nodes[1], address: "10.0.0.300" };
    const problems = problemsOf({ ...raw, clusterName: "Lab_1", kubernetesVersion: "1.20.0" });
    expect(problems).toHaveLength(3);
    expect(problems.join("\n")).toContain("talos-cluster:clusterName:");
    expect(problems.join("\n")).toContain("talos-cluster:nodes[1] (cp-2).address:");
    expect(problems.join("\n")).toContain("talos-cluster:kubernetesVersion:");
  });

  it("says nothing was created in the error message", () => {
    expect(() => parseConfig({})).toThrow(/nothing was created or changed/);
  });

  it("refuses unknown keys so typos do not pass silently, with the key most likely meant", () => {
    expect(problemsOf(stackWith({ clustername: "x" }))).toEqual(["talos-cluster:clustername: unknown key; did you mean clusterName?"]);
    expect(problemsOf(stackWith({ kubernetesVerison: "1.34.1", colour: "blue" }))).toEqual([
      "talos-cluster:kubernetesVerison: unknown key; did you mean kubernetesVersion?",
      "talos-cluster:colour: unknown key; check its spelling against the config table in docs/config.md",
    ]);
    const nodes = (validStack().nodes as Record<string, unknown>[]).map((n, i) => (i === 3 ? { ...n, lables: {} } : n));
    expect(
      problemsOf(stackWith({ nodes, network: { nodeSubnet: "10.0.0.0/24", vip: { address: "10.0.0.10", interfce: "enp1s0" } } })),
    ).toEqual(
      expect.arrayContaining([
        "talos-cluster:nodes[3] (worker-1).lables: unknown key; did you mean labels?",
        "talos-cluster:network.vip.interfce: unknown key; did you mean interface?",
      ]),
    );
  });

  it("suggests the official extension a misspelt one most likely meant", () => {
    expect(problemsOf(stackWith({ extensions: ["siderolabs/iscsi-tool"] }))).toEqual([
      'talos-cluster:extensions[0]: "siderolabs/iscsi-tool" is not an official Image Factory extension (did you mean siderolabs/iscsi-tools?); see lib/versions.ts for the list',
    ]);
  });
});

describe("stack config: addresses, names and versions", () => {
  it("names a node by its place in the list and by its name, so a long list needs no counting", () => {
    const raw = validStack();
    const nodes = raw.nodes as Record<string, unknown>[];
    nodes.push({ name: "wk-2", address: "10.0.0.22", role: "worker", installDisk: "sda", patches: ["a: b\n---\nc: d\n"] });
    expect(problemsOf(raw)).toEqual([
      "talos-cluster:nodes[4] (wk-2).patches[0]: holds 2 YAML documents; give each its own list entry",
      "talos-cluster:nodes[4] (wk-2).installDisk: must be a device path such as /dev/nvme0n1 or /dev/disk/by-id/nvme-<model>_<serial>",
    ]);
  });

  it("refuses a malformed node address with the value and the key", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[2] = { name: "cp-3", address: "10.0.0.300", role: "controlplane", installDisk: "/dev/sda" };
    expect(problemsOf(raw)).toEqual(['talos-cluster:nodes[2] (cp-3).address: "10.0.0.300" is not an IPv4 address']);
  });

  it("refuses a node name that is not a hostname", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[0] = { name: "CP_1", address: "10.0.0.11", role: "controlplane", installDisk: "/dev/sda" };
    expect(problemsOf(raw)[0]).toMatch(/^talos-cluster:nodes\[0\]\.name: "CP_1" is not a valid hostname/);
  });

  it("refuses an unknown role", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[3] = { name: "w", address: "10.0.0.21", role: "master", installDisk: "/dev/sda" };
    expect(problemsOf(raw)).toEqual(['talos-cluster:nodes[3] (w).role: must be "controlplane" or "worker"']);
  });

  it("refuses duplicate node names", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[1] = { name: "cp-1", address: "10.0.0.12", role: "controlplane", installDisk: "/dev/sda" };
    expect(problemsOf(raw)).toEqual(['talos-cluster:nodes[1].name: "cp-1" is already used by nodes[0]; node names must be unique']);
  });

  it("refuses duplicate node addresses", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[3] = { name: "worker-1", address: "10.0.0.11", role: "worker", installDisk: "/dev/sda" };
    expect(problemsOf(raw)).toEqual([
      "talos-cluster:nodes[3] (worker-1).address: 10.0.0.11 is already used by nodes[0] (cp-1); each node needs its own address",
    ]);
  });

  it("refuses a cluster without a control plane", () => {
    const raw = stackWith({ network: {}, nodes: [{ name: "w", address: "10.0.0.21", role: "worker", installDisk: "/dev/sda" }] });
    expect(problemsOf(raw)).toEqual(['talos-cluster:nodes: no node has role "controlplane"; a cluster needs at least one (three for HA)']);
  });

  it("refuses exactly 2 control planes with Talos' reason: neither can ever be upgraded", () => {
    const raw = validStack();
    const nodes = raw.nodes as Record<string, unknown>[];
    raw.nodes = nodes.filter((n) => n.name !== "cp-3");
    expect(problemsOf(raw)).toEqual([
      'talos-cluster:nodes: 2 control planes cannot be upgraded: Talos refuses with "etcd member count(2) is insufficient to maintain quorum if upgrade commences", and a reboot of either loses etcd\'s quorum; declare 1 or 3 (add two at once when growing from 1)',
    ]);
  });

  it("warns, without refusing, about an even number of control planes", () => {
    const raw = validStack();
    const nodes = raw.nodes as Record<string, unknown>[];
    nodes[3] = { name: "cp-4", address: "10.0.0.14", role: "controlplane", installDisk: "/dev/sda" };
    const { warnings } = parseConfig(raw);
    expect(warnings).toEqual([
      "talos-cluster:nodes: 4 control planes is an even etcd member count: it tolerates no more failures than 3; use an odd number",
    ]);
  });

  it("refuses a malformed Talos version", () => {
    expect(problemsOf(stackWith({ talosVersion: "1.11" }))).toEqual([
      "talos-cluster:talosVersion: must be a Talos release such as v1.14.1",
    ]);
  });

  it("refuses a malformed Kubernetes version", () => {
    expect(problemsOf(stackWith({ kubernetesVersion: "latest" }))).toEqual([
      "talos-cluster:kubernetesVersion: must be a Kubernetes release such as 1.37.0",
    ]);
  });

  it("refuses a Kubernetes version the Talos release does not support", () => {
    expect(problemsOf(stackWith({ talosVersion: "v1.9.5", kubernetesVersion: "1.34.1" }))).toEqual([
      "talos-cluster:kubernetesVersion: Kubernetes 1.34.1 is not supported by Talos v1.9.5; it supports 1.27 to 1.32",
    ]);
  });

  it("refuses a Talos minor missing from the support table rather than guessing", () => {
    expect(problemsOf(stackWith({ talosVersion: "v1.99.0" }))[0]).toMatch(
      /^talos-cluster:talosVersion: Talos 1\.99 is not in the support table/,
    );
  });

  it("refuses a malformed endpoint", () => {
    expect(problemsOf(stackWith({ endpoint: "ftp://x y", network: {} }))[0]).toMatch(
      /^talos-cluster:endpoint: "ftp:\/\/x y" is not a host, host:port or https:\/\/host:port/,
    );
  });

  it("refuses both installDisk and installDiskSelector on one node", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[0] = {
      name: "cp-1",
      address: "10.0.0.11",
      role: "controlplane",
      installDisk: "/dev/sda",
      installDiskSelector: { type: "nvme" },
    };
    expect(problemsOf(raw)).toEqual(["talos-cluster:nodes[0] (cp-1): set either installDisk or installDiskSelector, not both"]);
  });

  it("refuses a node that names no install disk, since Talos would otherwise wipe /dev/sda", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[1] = { name: "cp-2", address: "10.0.0.12", role: "controlplane" };
    expect(problemsOf(raw)).toEqual([
      "talos-cluster:nodes[1] (cp-2): set installDisk (e.g. /dev/nvme0n1) or installDiskSelector (e.g. { type: nvme }); without one Talos installs to /dev/sda, wiping whatever is there",
    ]);
  });

  it("refuses an install disk that is not a device path", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[0] = { name: "cp-1", address: "10.0.0.11", role: "controlplane", installDisk: "sda" };
    expect(problemsOf(raw)).toEqual([
      "talos-cluster:nodes[0] (cp-1).installDisk: must be a device path such as /dev/nvme0n1 or /dev/disk/by-id/nvme-<model>_<serial>",
    ]);
  });

  it("accepts the stable /dev/disk/by-id and by-path names of a disk", () => {
    for (const installDisk of ["/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456"]) {
      const raw = validStack();
      (raw.nodes as Record<string, unknown>[])[0] = { name: "cp-1", address: "10.0.0.11", role: "controlplane", installDisk };
      expect(parseConfig(raw).config.nodes[0]?.installDisk).toBe(installDisk);
    }
  });

  it("refuses a label key on a worker that NodeRestriction refuses from a kubelet, naming the key and why", () => {
    const raw = validStack();
    const worker = (raw.nodes as Record<string, unknown>[])[3];
    (raw.nodes as Record<string, unknown>[])[3] = {
      ...worker,
      labels: { "node-role.kubernetes.io/storage": "", "node.kubernetes.io/pool": "storage", "example.com/rack": "r1" },
    };
    expect(problemsOf(raw)).toEqual([
      "talos-cluster:nodes[3] (worker-1).labels: \"node-role.kubernetes.io/storage\" cannot be set on a worker: Talos labels a worker with its kubelet's credentials, and Kubernetes' NodeRestriction refuses this key (a kubelet may set kubernetes.io and k8s.io labels only under node.kubernetes.io/ or kubelet.kubernetes.io/ (or the topology and os/arch keys)), and with it every other label of the node; use a key under node.kubernetes.io/ or a domain of your own",
    ]);
  });

  it("allows a control plane any label key, since Talos labels control planes with admin credentials", () => {
    const raw = validStack();
    const cp = (raw.nodes as Record<string, unknown>[])[0];
    (raw.nodes as Record<string, unknown>[])[0] = { ...cp, labels: { "node-role.kubernetes.io/etcd": "" } };
    expect(parseConfig(raw).config.nodes[0]?.labels).toEqual({ "node-role.kubernetes.io/etcd": "" });
  });

  it("refuses a taint with an unknown effect", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[3] = {
      name: "worker-1",
      address: "10.0.0.21",
      role: "worker",
      installDisk: "/dev/sda",
      taints: [{ key: "gpu", effect: "NoWay" }],
    };
    expect(problemsOf(raw)).toEqual([
      "talos-cluster:nodes[3] (worker-1).taints[0].effect: must be one of NoSchedule, PreferNoSchedule, NoExecute",
    ]);
  });
});

describe("stack config: networks and the VIP", () => {
  it("refuses a malformed pod CIDR", () => {
    const problems = problemsOf(stackWith({ network: { podSubnets: ["10.244.0.0/33"] }, endpoint: "k8s.example.com" }));
    expect(problems).toEqual([
      'talos-cluster:network.podSubnets[0]: "10.244.0.0/33" is not an IPv4 CIDR with zero host bits (e.g. 10.244.0.0/16)',
    ]);
  });

  it("refuses overlapping pod and service ranges", () => {
    const problems = problemsOf(
      stackWith({ endpoint: "k8s.example.com", network: { podSubnets: ["10.96.0.0/16"], serviceSubnets: ["10.96.0.0/12"] } }),
    );
    expect(problems).toEqual([
      "talos-cluster:network.serviceSubnets[0]: overlaps talos-cluster:network.podSubnets[0]; pod and service ranges must be disjoint",
    ]);
  });

  it("refuses a VIP outside the nodes' subnet", () => {
    const problems = problemsOf(
      stackWith({
        endpoint: "192.168.1.10",
        network: { nodeSubnet: "10.0.0.0/24", vip: { address: "192.168.1.10", interface: "enp1s0" } },
      }),
    );
    expect(problems).toEqual([
      "talos-cluster:network.vip.address: 192.168.1.10 is outside the nodes' subnet 10.0.0.0/24; a Talos VIP must share the control planes' L2 network",
    ]);
  });

  it("requires nodeSubnet when a VIP is set", () => {
    const problems = problemsOf(stackWith({ network: { vip: { address: "10.0.0.10", interface: "enp1s0" } } }));
    expect(problems[0]).toMatch(/^talos-cluster:network.nodeSubnet: is required when network.vip is set/);
  });

  it("refuses a VIP that is also a node's address", () => {
    const problems = problemsOf(
      stackWith({ endpoint: "10.0.0.11", network: { nodeSubnet: "10.0.0.0/24", vip: { address: "10.0.0.11", interface: "enp1s0" } } }),
    );
    expect(problems).toEqual([
      "talos-cluster:network.vip.address: 10.0.0.11 is also nodes[0] (cp-1).address; the VIP must be a free address",
    ]);
  });

  it("refuses a node outside the declared node subnet", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[3] = { name: "worker-1", address: "10.0.1.21", role: "worker", installDisk: "/dev/sda" };
    expect(problemsOf(raw)).toEqual(["talos-cluster:nodes[3] (worker-1).address: 10.0.1.21 is outside network.nodeSubnet 10.0.0.0/24"]);
  });

  it("refuses a VIP without its link, saying how to find the link's name", () => {
    expect(problemsOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip: { address: "10.0.0.10" } } }))).toEqual([
      "talos-cluster:network.vip: needs the link the VIP lives on: interface (e.g. enp1s0; `talosctl get links --insecure -n <node>` lists a node's links) or deviceSelector (e.g. { busPath: 0000:01:00.0 })",
    ]);
  });

  it("refuses a VIP with both a link name and a device selector, and an empty selector", () => {
    const both = { address: "10.0.0.10", interface: "eno1", deviceSelector: { physical: true } };
    expect(problemsOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip: both } }))).toEqual([
      "talos-cluster:network.vip: set either interface or deviceSelector, not both",
    ]);
    const empty = { address: "10.0.0.10", deviceSelector: {} };
    expect(problemsOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip: empty } }))).toEqual([
      "talos-cluster:network.vip.deviceSelector: must set at least one of busPath, hardwareAddr, driver, physical",
    ]);
  });

  it("keeps DHCP on the VIP's link unless the stack turns it off", () => {
    expect(parseConfig(validStack()).config.network.vip?.dhcp).toBe(true);
  });

  it("refuses dhcp: false while a control plane gives the VIP's link no static address, naming each one", () => {
    const vip = { address: "10.0.0.10", deviceSelector: { busPath: "0000:01:00.0", physical: true }, dhcp: false };
    const nodes = validStack().nodes as Record<string, unknown>[];
    // cp-1 addresses the same link (keys in another order); cp-2 another link; cp-3 nothing.
    const withPatches = nodes.map((n) =>
      n.name === "cp-1"
        ? {
            ...n,
            patches: [
              {
                machine: {
                  network: { interfaces: [{ deviceSelector: { physical: true, busPath: "0000:01:00.0" }, addresses: ["10.0.0.11/24"] }] },
                },
              },
            ],
          }
        : n.name === "cp-2"
          ? { ...n, patches: [{ machine: { network: { interfaces: [{ interface: "enp1s0", addresses: ["10.0.0.12/24"] }] } } }] }
          : n,
    );
    const problems = problemsOf(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip }, nodes: withPatches }));
    expect(problems).toHaveLength(2);
    expect(problems[0]).toBe(
      `talos-cluster:network.vip.dhcp: false leaves nodes[1] (cp-2) without an address on the VIP's link (deviceSelector {"busPath":"0000:01:00.0","physical":true}): an interfaces entry that names a link turns off Talos' default DHCP on it. Give that link static addresses for the same deviceSelector in patches.controlplane or nodes[1].patches (machine.network.interfaces[].addresses), or leave network.vip.dhcp at its default, true`,
    );
    expect(problems[1]).toContain("nodes[2] (cp-3)");
  });

  it("accepts dhcp: false when every control plane addresses the VIP's link itself", () => {
    const vip = { address: "10.0.0.10", interface: "enp1s0", dhcp: false };
    const nodes = (validStack().nodes as Record<string, unknown>[]).map((n) =>
      n.role === "controlplane"
        ? { ...n, patches: [{ machine: { network: { interfaces: [{ interface: "enp1s0", addresses: [`${String(n.address)}/24`] }] } } }] }
        : n,
    );
    const { config } = parseConfig(stackWith({ network: { nodeSubnet: "10.0.0.0/24", vip }, nodes }));
    expect(config.network.vip?.dhcp).toBe(false);
    // DHCP turned on by a shared control-plane patch counts too.
    const viaPatch = stackWith({
      network: { nodeSubnet: "10.0.0.0/24", vip },
      patches: { controlplane: [{ machine: { network: { interfaces: [{ interface: "enp1s0", dhcp: true }] } } }] },
    });
    expect(parseConfig(viaPatch).config.network.vip?.dhcp).toBe(false);
  });

  it("refuses an endpoint address that is not the VIP", () => {
    expect(problemsOf(stackWith({ endpoint: "10.0.0.99" }))).toEqual([
      "talos-cluster:endpoint: 10.0.0.99 differs from network.vip.address 10.0.0.10; with a VIP the endpoint should be the VIP",
    ]);
  });
});

describe("stack config: extensions and addons", () => {
  it("refuses an extension that is not official, with a hint for a missing prefix", () => {
    expect(problemsOf(stackWith({ extensions: ["iscsi-tools", "acme/custom"] }))).toEqual([
      'talos-cluster:extensions[0]: "iscsi-tools" is not an official Image Factory extension (did you mean siderolabs/iscsi-tools?); see lib/versions.ts for the list',
      'talos-cluster:extensions[1]: "acme/custom" is not an official Image Factory extension; see lib/versions.ts for the list',
    ]);
  });

  it("refuses an extension its Talos release does not publish, naming the releases that have it", () => {
    expect(
      problemsOf(stackWith({ talosVersion: "v1.8.4", kubernetesVersion: "1.31.4", extensions: ["siderolabs/nfsd", "siderolabs/glibc"] })),
    ).toEqual([
      "talos-cluster:extensions[0]: siderolabs/nfsd is not published for Talos 1.8, so the factory would fail to build the installer; the releases that have it: 1.10, 1.11, 1.12, 1.13, 1.14",
      "talos-cluster:extensions[1]: siderolabs/glibc is not published for Talos 1.8, so the factory would fail to build the installer; the releases that have it: 1.9, 1.10, 1.11, 1.12, 1.13, 1.14",
    ]);
  });

  it("takes a way across minors as upgrade.path and refuses one Talos' installer would refuse, naming the key", () => {
    const upgrade = (path: unknown) => ({ maxUnavailableWorkers: 1, path });
    const to14 = { talosVersion: "v1.14.1", kubernetesVersion: "1.34.1" };
    expect(parseConfig(stackWith({ ...to14, upgrade: upgrade(["v1.12.6", "v1.13.9"]) })).config.upgrade.path).toEqual([
      "v1.12.6",
      "v1.13.9",
    ]);
    expect(parseConfig(stackWith({})).config.upgrade.path).toEqual([]);
    expect(problemsOf(stackWith({ ...to14, upgrade: upgrade(["v1.11.6"]) }))).toEqual([
      "talos-cluster:talosVersion: Talos 1.14 installs only over 1.12.0 or later, and v1.11.6 is older (the last release of talos-cluster:upgrade.path); add a release between them",
    ]);
    expect(problemsOf(stackWith({ ...to14, upgrade: upgrade(["v1.13.9", "v1.12.6", "v1.14.1", "1.13"]) }))).toEqual([
      "talos-cluster:upgrade.path[3]: must be a Talos release such as v1.13.9",
    ]);
    expect(problemsOf(stackWith({ ...to14, upgrade: upgrade(["v1.13.9", "v1.12.6", "v1.14.1"]) }))).toEqual([
      "talos-cluster:upgrade.path[1]: v1.12.6 does not come after v1.13.9; list the releases oldest first",
      "talos-cluster:upgrade.path[2]: v1.14.1 is not older than talos-cluster:talosVersion (v1.14.1); the path lists the releases on the way to it",
    ]);
    expect(problemsOf(stackWith({ ...to14, upgrade: upgrade(["v1.9.6", "v1.13.9"]) }))).toEqual([
      "talos-cluster:upgrade.path[1]: Talos 1.13 installs only over 1.11.0 or later, and v1.9.6 is older (upgrade.path[0]); add a release between them",
    ]);
    expect(problemsOf(stackWith({ ...to14, extensions: ["siderolabs/kata-containers-snp"], upgrade: upgrade(["v1.13.9"]) }))).toEqual([
      "talos-cluster:upgrade.path[0]: the extension siderolabs/kata-containers-snp is not published for Talos 1.13, so the factory would fail to build the step's installer",
    ]);
  });

  it("refuses a name a later release dropped, and accepts the names new in 1.11", () => {
    expect(problemsOf(stackWith({ extensions: ["siderolabs/i915-ucode"] }))).toEqual([
      "talos-cluster:extensions[0]: siderolabs/i915-ucode is not published for Talos 1.11, so the factory would fail to build the installer; the releases that have it: 1.7, 1.8",
    ]);
    const added = ["siderolabs/mdadm", "siderolabs/nvme-cli", "siderolabs/nvidia-fabricmanager-lts", "siderolabs/amd-ucode"];
    expect(parseConfig(stackWith({ extensions: added })).config.extensions).toEqual(added);
  });

  it("accepts intel-ucode listed explicitly", () => {
    expect(parseConfig(stackWith({ extensions: ["siderolabs/intel-ucode"] })).config.extensions).toEqual(["siderolabs/intel-ucode"]);
  });

  it("lets a stack switch an addon off and keeps the others' defaults", () => {
    const { config } = parseConfig(stackWith({ addons: { metricsServer: { enabled: false } } }));
    expect(config.addons.metricsServer.enabled).toBe(false);
    expect(config.addons.cilium.enabled).toBe(true);
    expect(config.addons.metricsServer.version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("refuses a chart repository that is not a URL", () => {
    expect(problemsOf(stackWith({ addons: { cilium: { repository: "helm.cilium.io" } } }))).toEqual([
      "talos-cluster:addons.cilium.repository: must be an http(s):// or oci:// chart repository URL",
    ]);
  });

  it("refuses a role patch that is neither a mapping nor YAML text", () => {
    expect(problemsOf(stackWith({ patches: { worker: [42] } }))).toEqual([
      "talos-cluster:patches.worker[0]: must be a machine-config patch object (a YAML/JSON mapping)",
    ]);
  });
});

describe("stack config: node timeout", () => {
  it("defaults to the provider's own 10 minutes and accepts Go durations", () => {
    expect(parseConfig(validStack()).config.nodeTimeout).toBe("10m");
    expect(parseConfig(stackWith({ nodeTimeout: "1h30m" })).config.nodeTimeout).toBe("1h30m");
    expect(parseConfig(stackWith({ nodeTimeout: "45s" })).config.nodeTimeout).toBe("45s");
  });

  it("refuses a timeout that is not a duration, or zero", () => {
    expect(problemsOf(stackWith({ nodeTimeout: "10 minutes" }))).toEqual([
      "talos-cluster:nodeTimeout: must be a duration such as 10m, 90s or 1h30m",
    ]);
    expect(problemsOf(stackWith({ nodeTimeout: "0m" }))).toEqual(["talos-cluster:nodeTimeout: must be longer than zero, e.g. 10m"]);
  });

  it("gives the bootstrap its own timeout, 20 minutes unless set, for a bare-metal install and reboot", () => {
    expect(parseConfig(validStack()).config.bootstrapTimeout).toBe("20m");
    expect(parseConfig(stackWith({ bootstrapTimeout: "45m" })).config.bootstrapTimeout).toBe("45m");
    expect(problemsOf(stackWith({ bootstrapTimeout: "soon" }))).toEqual([
      "talos-cluster:bootstrapTimeout: must be a duration such as 20m, 90s or 1h30m",
    ]);
  });
});

describe("stack config: apply mode", () => {
  it("applies with Talos' auto mode unless the stack says otherwise", () => {
    expect(parseConfig(validStack()).config.applyMode).toBe("auto");
    expect(parseConfig(stackWith({ applyMode: "no_reboot" })).config.applyMode).toBe("no_reboot");
  });

  it("refuses a mode the provider does not know, naming the choices", () => {
    expect(problemsOf(stackWith({ applyMode: "staged_if_needing_reboot" }))).toEqual([
      'talos-cluster:applyMode: must be "auto" (reboot only when a change needs it), "no_reboot" (never reboot: before Talos 1.14 such a change fails, from 1.14 it waits for the next reboot), "reboot" or "staged"',
    ]);
  });
});

describe("stack config: upgrades", () => {
  it("changes one worker at a time, waits 15 minutes per node, reboots through kexec and checks through Kubernetes unless the stack says otherwise", () => {
    expect(parseConfig(validStack()).config.upgrade).toEqual({
      maxUnavailableWorkers: 1,
      healthTimeout: "15m",
      rebootMode: "default",
      kubernetesChecks: true,
      path: [],
    });
    const { config } = parseConfig(
      stackWith({
        upgrade: {
          maxUnavailableWorkers: 3,
          snapshotDir: "/srv/etcd",
          healthTimeout: "30m",
          rebootMode: "powercycle",
          kubernetesChecks: false,
          drainTimeout: "45m",
        },
      }),
    );
    expect(config.upgrade).toEqual({
      maxUnavailableWorkers: 3,
      snapshotDir: "/srv/etcd",
      healthTimeout: "30m",
      rebootMode: "powercycle",
      kubernetesChecks: false,
      drainTimeout: "45m",
      path: [],
    });
  });

  it("takes recover.snapshot as a path, and names a missing or empty one", () => {
    expect(parseConfig(validStack()).config.recover).toBeUndefined();
    expect(parseConfig(stackWith({ recover: { snapshot: "snapshots/prod-cp-1.db" } })).config.recover).toEqual({
      snapshot: "snapshots/prod-cp-1.db",
    });
    expect(problemsOf(stackWith({ recover: { snapshot: "" } }))).toEqual([
      "talos-cluster:recover.snapshot: must be the path of an etcd snapshot, e.g. one the rollout wrote to upgrade.snapshotDir",
    ]);
    expect(problemsOf(stackWith({ recover: {} }))).toEqual([
      "talos-cluster:recover.snapshot: is required: the path of an etcd snapshot, e.g. one the rollout wrote to upgrade.snapshotDir",
    ]);
  });

  it("names every bad upgrade key at once, with what it takes", () => {
    expect(
      problemsOf(
        stackWith({
          upgrade: {
            maxUnavailableWorkers: 0,
            snapshotDir: "",
            healthTimeout: "soon",
            rebootMode: "kexec",
            kubernetesChecks: "yes",
            drainTimeout: "0m",
            wait: true,
          },
        }),
      ),
    ).toEqual([
      "talos-cluster:upgrade.maxUnavailableWorkers: must be at least 1: workers are changed this many at a time",
      "talos-cluster:upgrade.snapshotDir: must be a folder outside the checkout, e.g. /var/lib/talos-cluster/snapshots/prod",
      "talos-cluster:upgrade.healthTimeout: must be a duration such as 15m, 90s or 1h30m",
      'talos-cluster:upgrade.rebootMode: must be "default" (kexec) or "powercycle" (through the firmware)',
      "talos-cluster:upgrade.kubernetesChecks: must be true or false",
      "talos-cluster:upgrade.drainTimeout: must be longer than zero, e.g. 15m",
      "talos-cluster:upgrade.wait: unknown key; check its spelling against the config table in docs/config.md",
    ]);
    expect(problemsOf(stackWith({ upgrade: { maxUnavailableWorkers: 1.5 } }))).toEqual([
      "talos-cluster:upgrade.maxUnavailableWorkers: must be a whole number of workers, at least 1",
    ]);
  });
});

describe("stack config: credentials", () => {
  it("renews the talosconfig and kubeconfig 30 days before their end unless the stack says otherwise", () => {
    expect(parseConfig(validStack()).config.credentials).toEqual({ renewBefore: "720h" });
    expect(parseConfig(stackWith({ credentials: { renewBefore: "2160h" } })).config.credentials).toEqual({ renewBefore: "2160h" });
  });

  it("refuses a renewBefore that is no duration, or not shorter than the certificates' year, naming the key", () => {
    expect(problemsOf(stackWith({ credentials: { renewBefore: "30d" } }))).toEqual([
      "talos-cluster:credentials.renewBefore: must be a duration such as 720h, 90s or 1h30m",
    ]);
    expect(problemsOf(stackWith({ credentials: { renewBefore: "8760h" } }))).toEqual([
      "talos-cluster:credentials.renewBefore: must be shorter than the certificates' lifetime (8760h), e.g. 720h (30 days): the talosconfig and kubeconfig are renewed by an up once they have this long left",
    ]);
  });
});

describe("stack config: config documents in patches", () => {
  it("refuses a document kind newer than the declared Talos release, naming the kind, its release and the key; accepts it from that release", () => {
    const mirror = {
      apiVersion: "v1alpha1",
      kind: "RegistryMirrorConfig",
      name: "docker.io",
      endpoints: [{ url: "https://mirror.example" }],
    };
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[3] = { ...(raw.nodes as Record<string, unknown>[])[3], patches: [mirror] };
    expect(problemsOf(raw)).toEqual([
      'talos-cluster:nodes[3] (worker-1).patches[0]: RegistryMirrorConfig is a Talos 1.12 config document, and nodes on Talos 1.11 (talos-cluster:talosVersion v1.11.5) cannot decode it ("RegistryMirrorConfig" "v1alpha1": not registered); declare Talos 1.12 or later, or express it in the machine config',
    ]);
    expect(parseConfig({ ...raw, talosVersion: "v1.12.6", kubernetesVersion: "1.35.0" }).config.nodes[3]?.patches).toEqual([mirror]);
    // Kinds the talos plugin's own library (v1.9.2) never knew pass once the release has them.
    const volume = { apiVersion: "v1alpha1", kind: "UserVolumeConfig", name: "data", provisioning: { diskSelector: { match: "true" } } };
    expect(parseConfig(stackWith({ patches: { worker: [volume] } })).config.patches.worker).toEqual([volume]);
  });

  it("refuses an unknown document kind, listing the kinds the library knows", () => {
    const problems = problemsOf(stackWith({ patches: { worker: [{ apiVersion: "v1alpha1", kind: "VolumConfig", name: "EPHEMERAL" }] } }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^talos-cluster:patches\.worker\[0\]: unknown config document kind "VolumConfig"; .* knows .*VolumeConfig/);
  });

  it("accepts a document the library knows, and refuses one without its apiVersion", () => {
    const volume = { apiVersion: "v1alpha1", kind: "VolumeConfig", name: "EPHEMERAL", provisioning: { maxSize: "50GiB" } };
    expect(parseConfig(stackWith({ patches: { all: [volume] } })).config.patches.all).toEqual([volume]);
    expect(problemsOf(stackWith({ patches: { all: [{ kind: "VolumeConfig", name: "EPHEMERAL" }] } }))).toEqual([
      "talos-cluster:patches.all[0].apiVersion: a VolumeConfig document needs apiVersion: v1alpha1",
    ]);
  });
});

describe("stack config: patches given as YAML text", () => {
  it("takes a patch written as YAML text (`- |`) as the mapping it holds, as talosctl --config-patch does", () => {
    const raw = stackWith({ patches: { all: ['machine:\n  sysctls:\n    vm.max_map_count: "262144"\n'] } });
    expect(parseConfig(raw).config.patches.all).toEqual([{ machine: { sysctls: { "vm.max_map_count": "262144" } } }]);
  });

  it("checks a patch in YAML text like any other, and refuses text that is not one mapping with the form to use", () => {
    const nodes = (validStack().nodes as Record<string, unknown>[]).map((n, i) =>
      i === 0 ? { ...n, patches: ["machine:\n  install:\n    image: ghcr.io/siderolabs/installer:v1.11.5\n"] } : n,
    );
    expect(problemsOf(stackWith({ nodes, patches: { all: ["machine: {}\n---\nkind: HostnameConfig\n", "just text"] } }))).toEqual([
      "talos-cluster:patches.all[0]: holds 2 YAML documents; give each its own list entry",
      'talos-cluster:patches.all[1]: must be a machine-config patch: a mapping such as "machine: {sysctls: {...}}", as YAML text or nested YAML',
      "talos-cluster:nodes[0] (cp-1).patches[0]: machine.install.image is set by the program; the program derives it from the schematic: set extensions, talosVersion or imageFactoryHost",
    ]);
  });
});

describe("stack config: patches that fight the program", () => {
  it("refuses a patch setting what the program owns, naming the key to use instead", () => {
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[0] = {
      ...(raw.nodes as Record<string, unknown>[])[0],
      patches: [{ machine: { install: { image: "ghcr.io/siderolabs/installer:v1.11.5" }, network: { hostname: "x" } } }],
    };
    expect(problemsOf({ ...raw, patches: { all: [{ cluster: { network: { cni: { name: "flannel" } } } }] } })).toEqual([
      "talos-cluster:patches.all[0]: cluster.network.cni is set by the program; Cilium is the CNI: set addons.cilium.enabled to false to choose Talos' own",
      "talos-cluster:nodes[0] (cp-1).patches[0]: machine.install.image is set by the program; the program derives it from the schematic: set extensions, talosVersion or imageFactoryHost",
      "talos-cluster:nodes[0] (cp-1).patches[0]: machine.network.hostname is set by the program; the node's name is its hostname: use nodes[].name",
    ]);
  });

  it("refuses the same settings in the documents that hold them for a Talos 1.12 or 1.14 contract", () => {
    const doc = (kind: string, body: Record<string, unknown>) => ({ apiVersion: "v1alpha1", kind, ...body });
    const raw = validStack();
    (raw.nodes as Record<string, unknown>[])[0] = {
      ...(raw.nodes as Record<string, unknown>[])[0],
      patches: [doc("HostnameConfig", { auto: "stable" }), doc("KubeNodeConfig", { labels: { a: "b" }, taints: { c: "NoSchedule" } })],
    };
    const all = [
      doc("KubeNetworkConfig", { podSubnets: ["10.1.0.0/16"], serviceSubnets: ["10.2.0.0/16"] }),
      doc("KubeProxyConfig", { mode: "ipvs" }),
      doc("KubeFlannelCNIConfig", { backendType: "vxlan" }),
      doc("UnattendedInstallConfig", { installer: { image: "ghcr.io/siderolabs/installer:v1.14.1" } }),
    ];
    const problems = problemsOf({ ...raw, patches: { all } });
    const owned = problems.filter((p) => p.includes("is set by the program"));
    expect(owned).toEqual([
      "talos-cluster:patches.all[0]: KubeNetworkConfig.podSubnets is set by the program; use network.podSubnets",
      "talos-cluster:patches.all[0]: KubeNetworkConfig.serviceSubnets is set by the program; use network.serviceSubnets",
      "talos-cluster:patches.all[1]: the KubeProxyConfig document is set by the program; Cilium replaces kube-proxy: set addons.cilium.enabled to false to keep it",
      "talos-cluster:patches.all[2]: the KubeFlannelCNIConfig document is set by the program; Cilium is the CNI: set addons.cilium.enabled to false to choose Talos' own",
      "talos-cluster:patches.all[3]: the UnattendedInstallConfig document is set by the program; the program installs each node through machine.install: use nodes[].installDisk or nodes[].installDiskSelector, and extensions, talosVersion or imageFactoryHost for the image",
      "talos-cluster:nodes[0] (cp-1).patches[0]: the HostnameConfig document is set by the program; the node's name is its hostname: use nodes[].name",
      "talos-cluster:nodes[0] (cp-1).patches[1]: KubeNodeConfig.labels is set by the program; use nodes[].labels",
      "talos-cluster:nodes[0] (cp-1).patches[1]: KubeNodeConfig.taints is set by the program; use nodes[].taints",
    ]);
    const withoutCilium = problemsOf({ ...raw, addons: { cilium: { enabled: false } }, patches: { all } });
    expect(withoutCilium.filter((p) => p.includes("KubeProxyConfig document") || p.includes("KubeFlannelCNIConfig document"))).toEqual([]);
  });

  it("lets a stack choose Talos' CNI in a patch once Cilium is off", () => {
    const raw = stackWith({
      addons: { cilium: { enabled: false } },
      patches: { all: [{ cluster: { network: { cni: { name: "flannel" } } } }] },
    });
    expect(parseConfig(raw).config.patches.all).toHaveLength(1);
  });
});
