// BaseAddons: what a fresh Talos cluster needs before it runs workloads, installed through a
// Kubernetes provider built from the cluster's kubeconfig.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as talosnode from "@talos-cluster/talosnode";
import { approverManifestUrl, CNI_RELEASE_TIMEOUT_SECONDS, ciliumValues, metricsServerValues } from "../lib/addons";
import type { AddonConfig, ClusterConfig } from "../lib/config/schema";
import { resourceNames } from "../lib/naming";
import { TYPES } from "../lib/tokens";
import { ADDON_DEFAULTS } from "../lib/versions";

export interface BaseAddonsArgs {
  /** Admin kubeconfig of the cluster; kept secret. */
  kubeconfig: pulumi.Input<string>;
  /**
   * Stable identity of the cluster for the Kubernetes provider. Every kubeconfig fetch issues a
   * new client certificate; without a fixed identifier a renewed kubeconfig would replace the
   * provider and with it every addon, the CNI included.
   */
  clusterIdentifier: string;
  /** Which addons to install, at which versions, from which repositories. */
  addons: ClusterConfig["addons"];
  /** Resources the addons must wait for: the bootstrap, and whatever made the kubeconfig. */
  dependsOn: pulumi.Input<pulumi.Resource>[];
  /**
   * What "ready" means before the addons: the API server's other addresses to ask (a VIP that is
   * not the kubeconfig's server), the Node names that must turn Ready once the CNI runs, and how
   * long each wait may take (a Go duration).
   */
  ready: { endpoints: string[]; nodes: string[]; timeout: string };
}

export class BaseAddons extends pulumi.ComponentResource {
  public readonly provider: k8s.Provider;
  /** Installed addons by name, in install order. */
  public readonly installed: pulumi.Resource[];

  constructor(name: string, args: BaseAddonsArgs, opts?: pulumi.ComponentResourceOptions) {
    super(TYPES.addons, name, {}, opts);

    // The kubeconfig exists seconds after the bootstrap; etcd, the API server and the VIP come
    // minutes later. The Kubernetes provider checks the cluster once when it starts and then
    // fails every create, so it starts only once /readyz answers.
    const apiServerReady = new talosnode.KubernetesReady(
      resourceNames.ready(name, "api-server"),
      { kubeconfig: pulumi.secret(args.kubeconfig), stage: "api-server", endpoints: args.ready.endpoints, timeout: args.ready.timeout },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.provider = new k8s.Provider(
      resourceNames.k8sProvider(name),
      {
        kubeconfig: pulumi.secret(args.kubeconfig),
        clusterIdentifier: args.clusterIdentifier,
        // Server-side apply lets later upgrades of charts and manifests merge cleanly.
        enableServerSideApply: true,
      },
      { parent: this, dependsOn: [...args.dependsOn, apiServerReady] },
    );
    const childOpts = (after: pulumi.Resource[]): pulumi.CustomResourceOptions => ({
      parent: this,
      provider: this.provider,
      dependsOn: [...args.dependsOn, apiServerReady, ...after],
    });
    // Charts go to kube-system: they are part of the platform, like the control plane itself.
    const chart = (
      release: string,
      chartName: string,
      addon: AddonConfig,
      values: Record<string, unknown>,
      after: pulumi.Resource[],
      timeout?: number,
    ) =>
      new k8s.helm.v3.Release(
        resourceNames.addon(name, release),
        {
          name: release,
          chart: chartName,
          version: addon.version,
          namespace: "kube-system",
          repositoryOpts: { repo: addon.repository },
          values,
          ...(timeout === undefined ? {} : { timeout }),
        },
        childOpts(after),
      );

    const { cilium, kubeletServingCertApprover: approver, metricsServer } = args.addons;
    this.installed = [];
    // Every pod but host-network ones waits for the CNI, and no Node turns Ready without one: the
    // rest installs once the CNI runs and every node is Ready.
    const cni: pulumi.Resource[] = [];
    if (cilium.enabled) {
      const release = chart("cilium", ADDON_DEFAULTS.cilium.chart, cilium, ciliumValues(), [], CNI_RELEASE_TIMEOUT_SECONDS);
      this.installed.push(release);
      cni.push(release);
    }
    const afterCni: pulumi.Resource[] = [];
    if (approver.enabled || metricsServer.enabled) {
      afterCni.push(
        new talosnode.KubernetesReady(
          resourceNames.ready(name, "nodes"),
          { kubeconfig: pulumi.secret(args.kubeconfig), stage: "nodes", nodes: args.ready.nodes, timeout: args.ready.timeout },
          { parent: this, dependsOn: [...args.dependsOn, apiServerReady, ...cni] },
        ),
      );
    }

    const afterApprover: pulumi.Resource[] = [];
    if (approver.enabled) {
      // The provider reads the manifest (v2), so a preview never fetches it inside the program.
      const manifest = new k8s.yaml.v2.ConfigFile(
        resourceNames.addon(name, "kubelet-serving-cert-approver"),
        { file: approverManifestUrl(approver.repository, approver.version) },
        {
          ...childOpts(afterCni),
          // Upstream's manifest follows a rolling tag; pin the image to the version we chose.
          transforms: [pinImage(ADDON_DEFAULTS.kubeletServingCertApprover.image, approver.version)],
        },
      );
      this.installed.push(manifest);
      afterApprover.push(manifest);
    }

    if (metricsServer.enabled) {
      // metrics-server only turns ready once kubelet serving certs are approved.
      const release = chart("metrics-server", ADDON_DEFAULTS.metricsServer.chart, metricsServer, metricsServerValues(approver.enabled), [
        ...afterCni,
        ...afterApprover,
      ]);
      this.installed.push(release);
    }

    this.registerOutputs({ installed: this.installed.map((r) => r.urn) });
  }
}

interface PodTemplateProps {
  spec?: { template?: { spec?: { containers?: { image?: string }[] } } };
}

/** A resource transform that sets every Deployment container running `image` to the pinned tag. */
export function pinImage(image: string, version: string): pulumi.ResourceTransform {
  return (args) => {
    if (args.type !== "kubernetes:apps/v1:Deployment") return undefined;
    const props = structuredClone(args.props) as PodTemplateProps & Record<string, unknown>;
    let changed = false;
    for (const container of props.spec?.template?.spec?.containers ?? []) {
      const current = container.image ?? "";
      if (current === image || current.startsWith(`${image}:`) || current.startsWith(`${image}@`)) {
        container.image = `${image}:${version}`;
        changed = true;
      }
    }
    return changed ? { props, opts: args.opts } : undefined;
  };
}
