// What the base addons are installed with: chart values for Talos, the approver's manifest, the
// CNI's wait. BaseAddons (components/addons.ts) declares them. Pure.

/** Helm's wait for the CNI: image pulls on every node of a fresh bare-metal cluster. */
export const CNI_RELEASE_TIMEOUT_SECONDS = 900;

/** Cilium values for Talos: KubePrism endpoint, no kube-proxy, Talos' cgroup layout and capabilities. */
export function ciliumValues(): Record<string, unknown> {
  return {
    ipam: { mode: "kubernetes" },
    kubeProxyReplacement: true,
    // KubePrism: the API server load balancer Talos runs on every node, so Cilium reaches the
    // API before any Service (and so before Cilium itself) works.
    k8sServiceHost: "localhost",
    k8sServicePort: 7445,
    // Talos mounts cgroup v2 itself and forbids SYS_MODULE for workloads.
    cgroup: { autoMount: { enabled: false }, hostRoot: "/sys/fs/cgroup" },
    securityContext: {
      capabilities: {
        ciliumAgent: [
          "CHOWN",
          "KILL",
          "NET_ADMIN",
          "NET_RAW",
          "IPC_LOCK",
          "SYS_ADMIN",
          "SYS_RESOURCE",
          "DAC_OVERRIDE",
          "FOWNER",
          "SETGID",
          "SETUID",
        ],
        cleanCiliumState: ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"],
      },
    },
  };
}

/** metrics-server values: verify kubelet certs when the approver signs them, skip TLS checks otherwise. */
export function metricsServerValues(approverEnabled: boolean): Record<string, unknown> {
  return approverEnabled ? {} : { args: ["--kubelet-insecure-tls"] };
}

/** Where the approver's pinned manifest is read from. */
export function approverManifestUrl(repository: string, version: string): string {
  return `${repository.replace(/\/+$/, "")}/v${version}/deploy/standalone-install.yaml`;
}
