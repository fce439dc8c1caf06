import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { BaseAddons } from "../components/addons";
import { approverManifestUrl } from "../lib/addons";
import { parseConfig } from "../lib/config/parse";
import { TYPES } from "../lib/tokens";
import { stackWith } from "./fixtures/stacks";
import { plan } from "./harness";

class FakeBootstrap extends pulumi.CustomResource {
  constructor(name: string, opts?: pulumi.CustomResourceOptions) {
    super("test:index:Bootstrap", name, {}, opts);
  }
}

async function addonsPlan(addons: Record<string, unknown> = {}) {
  const { config } = parseConfig(stackWith({ addons }));
  return plan((record) => {
    const bootstrap = new FakeBootstrap("lab-bootstrap", { transformations: [record] });
    new BaseAddons(
      "lab",
      {
        kubeconfig: "apiVersion: v1\nkind: Config\n",
        clusterIdentifier: "lab",
        addons: config.addons,
        dependsOn: [bootstrap],
        ready: { endpoints: ["https://10.0.0.10:6443"], nodes: ["cp-1", "worker-1"], timeout: "12m" },
      },
      { transformations: [record] },
    );
  });
}

describe("BaseAddons", () => {
  it("builds the Kubernetes provider from the kubeconfig, as a secret, with a stable cluster identity", async () => {
    const p = await addonsPlan();
    const provider = p.byName("lab-k8s");
    expect(provider.type).toBe("pulumi:providers:kubernetes");
    expect(provider.inputs.kubeconfig).toContain("kind: Config");
    expect(provider.secretInputs).toContain("kubeconfig");
    expect(provider.inputs.clusterIdentifier).toBe("lab");
  });

  it("installs Cilium, the approver and metrics-server through that provider", async () => {
    const p = await addonsPlan();
    const children = p.resources.filter((r) => r.parent === "lab" && r.name !== "lab-k8s" && !r.name.endsWith("-ready"));
    expect(children.map((r) => r.name)).toEqual(["lab-cilium", "lab-kubelet-serving-cert-approver", "lab-metrics-server"]);
    for (const child of children) expect(child.provider).toBe("lab-k8s");
  });

  it("makes every addon and the provider wait for the bootstrap", async () => {
    const p = await addonsPlan();
    for (const name of ["lab-k8s", "lab-cilium", "lab-kubelet-serving-cert-approver", "lab-metrics-server"]) {
      expect(p.byName(name).dependsOn).toContain("lab-bootstrap");
    }
  });

  it("installs the CNI before anything that needs pod networking, and the rest once every node is Ready", async () => {
    const p = await addonsPlan();
    expect(p.byName("lab-nodes-ready").dependsOn).toContain("lab-cilium");
    expect(p.byName("lab-kubelet-serving-cert-approver").dependsOn).toContain("lab-nodes-ready");
    expect(p.byName("lab-metrics-server").dependsOn).toEqual(
      expect.arrayContaining(["lab-nodes-ready", "lab-kubelet-serving-cert-approver"]),
    );
  });

  it("starts the Kubernetes provider only once the API server answers /readyz, through the kubeconfig and the other endpoints", async () => {
    const p = await addonsPlan();
    const gate = p.byName("lab-api-server-ready");
    expect(gate.type).toBe(TYPES.kubernetesReady);
    expect(gate.inputs).toMatchObject({ stage: "api-server", endpoints: ["https://10.0.0.10:6443"], timeout: "12m" });
    expect(gate.secretInputs).toContain("kubeconfig");
    expect(gate.dependsOn).toContain("lab-bootstrap");
    expect(p.byName("lab-k8s").dependsOn).toContain("lab-api-server-ready");
    expect(p.byName("lab-cilium").dependsOn).toContain("lab-api-server-ready");
    // No Node check before the CNI: without one no Node turns Ready.
    expect(p.byName("lab-cilium").dependsOn).not.toContain("lab-nodes-ready");
    expect(p.byName("lab-nodes-ready").inputs).toMatchObject({ stage: "nodes", nodes: ["cp-1", "worker-1"], timeout: "12m" });
  });

  it("gives the CNI's release a timeout that fits image pulls on a fresh bare-metal cluster", async () => {
    const p = await addonsPlan();
    expect(p.byName("lab-cilium").inputs.timeout).toBe(900);
    expect(p.byName("lab-metrics-server").inputs.timeout).toBeUndefined();
  });

  it("configures Cilium for Talos: kube-proxy replacement through KubePrism", async () => {
    const p = await addonsPlan();
    const cilium = p.byName("lab-cilium").inputs;
    expect(cilium.chart).toBe("cilium");
    expect(cilium.namespace).toBe("kube-system");
    const values = cilium.values as Record<string, unknown>;
    expect(values.kubeProxyReplacement).toBe(true);
    expect(values.k8sServiceHost).toBe("localhost");
    expect(values.k8sServicePort).toBe(7445);
  });

  it("uses the pinned chart version and a stack's repository override", async () => {
    const p = await addonsPlan({ cilium: { version: "1.17.9", repository: "https://charts.mirror.example/cilium" } });
    const cilium = p.byName("lab-cilium").inputs;
    expect(cilium.version).toBe("1.17.9");
    expect(cilium.repositoryOpts).toEqual({ repo: "https://charts.mirror.example/cilium" });
  });

  it("reads the approver manifest at the pinned version from the configured base", () => {
    expect(approverManifestUrl("https://mirror.example/approver/", "0.11.0")).toBe(
      "https://mirror.example/approver/v0.11.0/deploy/standalone-install.yaml",
    );
  });

  it("leaves Cilium out when switched off", async () => {
    const p = await addonsPlan({ cilium: { enabled: false } });
    expect(p.resources.map((r) => r.name)).not.toContain("lab-cilium");
    expect(p.byName("lab-metrics-server").dependsOn).not.toContain("lab-cilium");
  });

  it("leaves the approver out when switched off and lets metrics-server skip kubelet TLS checks", async () => {
    const p = await addonsPlan({ kubeletServingCertApprover: { enabled: false } });
    expect(p.resources.map((r) => r.name)).not.toContain("lab-kubelet-serving-cert-approver");
    expect((p.byName("lab-metrics-server").inputs.values as Record<string, unknown>).args).toEqual(["--kubelet-insecure-tls"]);
  });

  it("leaves metrics-server out when switched off", async () => {
    const p = await addonsPlan({ metricsServer: { enabled: false } });
    expect(p.resources.map((r) => r.name)).not.toContain("lab-metrics-server");
    expect(p.resources.map((r) => r.name)).toContain("lab-cilium");
  });
});
