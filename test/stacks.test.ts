import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ConfigError, parseConfig } from "../lib/config/parse";
import { configFromStackFile } from "../lib/config/source";
import { DEFAULT_KUBERNETES_VERSION, DEFAULT_TALOS_VERSION, upgradeRefusal } from "../lib/versions";

const root = join(__dirname, "..");
const stackFile = (name: string) => readFileSync(join(root, `Pulumi.${name}.yaml`), "utf8");

describe("the committed stacks", () => {
  it("dev validates without warnings", () => {
    const { config, warnings } = parseConfig(configFromStackFile(stackFile("dev")));
    expect(warnings).toEqual([]);
    expect(config.clusterName).toBe("dev");
  });

  it("prod validates and is highly available: an odd number of at least three control planes behind a VIP", () => {
    const { config, warnings } = parseConfig(configFromStackFile(stackFile("prod")));
    expect(warnings).toEqual([]);
    expect(config.controlPlanes.length).toBeGreaterThanOrEqual(3);
    expect(config.controlPlanes.length % 2).toBe(1);
    expect(config.network.vip?.address).toBe(config.endpointHost);
  });

  it("run the Talos release a new stack gets; dev its Kubernetes, prod the next minor after the 1.33 it ran", () => {
    const dev = parseConfig(configFromStackFile(stackFile("dev"))).config;
    const prod = parseConfig(configFromStackFile(stackFile("prod"))).config;
    expect([dev.talosVersion, dev.kubernetesVersion]).toEqual([DEFAULT_TALOS_VERSION, DEFAULT_KUBERNETES_VERSION]);
    expect([prod.talosVersion, prod.kubernetesVersion.split(".").slice(0, 2).join(".")]).toEqual([DEFAULT_TALOS_VERSION, "1.34"]);
  });

  it("take prod, created on Talos 1.11, to its release through steps Talos' installer accepts", () => {
    const { config } = parseConfig(configFromStackFile(stackFile("prod")));
    const steps = ["v1.11.5", ...config.upgrade.path, config.talosVersion];
    expect(steps.slice(1).map((to, i) => upgradeRefusal(steps[i] as string, to))).toEqual(steps.slice(1).map(() => undefined));
  });

  it("leave time servers at Talos' default, which Talos 1.14 reaches with NTS (machine.time.servers turns NTS off)", () => {
    for (const name of ["dev", "prod"]) {
      const { config } = parseConfig(configFromStackFile(stackFile(name)));
      const patches = [
        ...config.patches.all,
        ...config.patches.controlplane,
        ...config.patches.worker,
        ...config.nodes.flatMap((n) => n.patches),
      ];
      expect(patches.filter((p) => JSON.stringify(p).includes('"time"'))).toEqual([]);
    }
  });

  it("keep no plain-text secrets: every secret-looking key holds an encrypted `secure` value", () => {
    const plain: string[] = [];
    const walk = (value: unknown, path: string): void => {
      if (typeof value !== "object" || value === null) return;
      for (const [key, child] of Object.entries(value)) {
        const here = `${path}.${key}`;
        const isSecure = typeof child === "object" && child !== null && "secure" in child;
        if (/token|password|passphrase|secret|kubeconfig|talosconfig|private/i.test(key) && !isSecure) plain.push(here);
        if (!isSecure) walk(child, here);
      }
    };
    for (const name of ["dev", "prod"]) walk(parseYaml(stackFile(name)), name);
    expect(plain).toEqual([]);
  });
});

describe("a broken stack file", () => {
  it("is refused with every problem listed, each naming its key", () => {
    const raw = configFromStackFile(readFileSync(join(__dirname, "fixtures", "Pulumi.broken.yaml"), "utf8"));
    let problems: string[] = [];
    try {
      parseConfig(raw);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems = e.problems;
    }
    expect(problems).toEqual([
      "talos-cluster:clusterName: must be lower-case letters, digits and '-', at most 63 characters",
      'talos-cluster:nodes[1] (cp-1).address: "10.20.0.300" is not an IPv4 address',
      "talos-cluster:network.vip: needs the link the VIP lives on: interface (e.g. enp1s0; `talosctl get links --insecure -n <node>` lists a node's links) or deviceSelector (e.g. { busPath: 0000:01:00.0 })",
      "talos-cluster:kubernetesVersion: Kubernetes 1.28.0 is not supported by Talos v1.11.5; it supports 1.29 to 1.34",
      'talos-cluster:extensions[0]: "intel-ucode" is not an official Image Factory extension (did you mean siderolabs/intel-ucode?); see lib/versions.ts for the list',
      'talos-cluster:nodes[1].name: "cp-1" is already used by nodes[0]; node names must be unique',
      "talos-cluster:nodes[1] (cp-1): set installDisk (e.g. /dev/nvme0n1) or installDiskSelector (e.g. { type: nvme }); without one Talos installs to /dev/sda, wiping whatever is there",
      'talos-cluster:nodes: 2 control planes cannot be upgraded: Talos refuses with "etcd member count(2) is insufficient to maintain quorum if upgrade commences", and a reboot of either loses etcd\'s quorum; declare 1 or 3 (add two at once when growing from 1)',
      "talos-cluster:network.vip.address: 10.30.0.10 is outside the nodes' subnet 10.20.0.0/24; a Talos VIP must share the control planes' L2 network",
      "talos-cluster:endpoint: 10.20.0.10 differs from network.vip.address 10.30.0.10; with a VIP the endpoint should be the VIP",
    ]);
  });
});
