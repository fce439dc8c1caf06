// Every pinned version and catalogue lives here, so Renovate (and a reviewer) finds them in one place.

/** Talos release a new stack gets when it names none. */
export const DEFAULT_TALOS_VERSION = "v1.11.5";
/** Kubernetes release a new stack gets when it names none. */
export const DEFAULT_KUBERNETES_VERSION = "1.34.1";

/** The public Image Factory; mirrored or self-hosted factories override it per stack. */
export const DEFAULT_IMAGE_FACTORY_HOST = "factory.talos.dev";

/** The extension every image carries: CPU microcode updates are not optional on this platform. */
export const REQUIRED_EXTENSION = "siderolabs/intel-ucode";

/**
 * Kubernetes minor versions each Talos minor supports (Talos support matrix).
 * A Talos minor missing here is refused rather than guessed: add its row when adopting it.
 */
export const KUBERNETES_SUPPORT: Readonly<Record<string, { min: string; max: string }>> = {
  "1.7": { min: "1.25", max: "1.30" },
  "1.8": { min: "1.26", max: "1.31" },
  "1.9": { min: "1.27", max: "1.32" },
  "1.10": { min: "1.28", max: "1.33" },
  "1.11": { min: "1.29", max: "1.34" },
  "1.12": { min: "1.30", max: "1.35" },
};

/**
 * Official system extensions published by the Image Factory (siderolabs/extensions). A name
 * outside this list would make the factory reject the schematic at `pulumi up`, after other
 * resources may already have changed, so it is refused at config time instead.
 */
export const OFFICIAL_EXTENSIONS: readonly string[] = [
  "siderolabs/amd-ucode",
  "siderolabs/amdgpu",
  "siderolabs/binfmt-misc",
  "siderolabs/bnx2-bnx2x",
  "siderolabs/btrfs",
  "siderolabs/chelsio-drivers",
  "siderolabs/chelsio-firmware",
  "siderolabs/cloudflared",
  "siderolabs/crun",
  "siderolabs/drbd",
  "siderolabs/ecr-credential-provider",
  "siderolabs/fuse3",
  "siderolabs/gasket-driver",
  "siderolabs/glibc",
  "siderolabs/gvisor",
  "siderolabs/hello-world-service",
  "siderolabs/i915",
  "siderolabs/intel-ice-firmware",
  "siderolabs/intel-ucode",
  "siderolabs/iscsi-tools",
  "siderolabs/kata-containers",
  "siderolabs/lldpd",
  "siderolabs/mei",
  "siderolabs/nfsd",
  "siderolabs/nut-client",
  "siderolabs/nvidia-container-toolkit-lts",
  "siderolabs/nvidia-container-toolkit-production",
  "siderolabs/nvidia-open-gpu-kernel-modules-lts",
  "siderolabs/nvidia-open-gpu-kernel-modules-production",
  "siderolabs/nonfree-kmod-nvidia-lts",
  "siderolabs/nonfree-kmod-nvidia-production",
  "siderolabs/qemu-guest-agent",
  "siderolabs/qlogic-firmware",
  "siderolabs/realtek-firmware",
  "siderolabs/spin",
  "siderolabs/stargz-snapshotter",
  "siderolabs/tailscale",
  "siderolabs/thunderbolt",
  "siderolabs/usb-modem-drivers",
  "siderolabs/util-linux-tools",
  "siderolabs/v4l-uvc-drivers",
  "siderolabs/vmtoolsd-guest-agent",
  "siderolabs/wasmedge",
  "siderolabs/xen-guest-agent",
  "siderolabs/youki",
  "siderolabs/zfs",
];

/** Base addon charts, pinned; a stack may override each version. */
export const ADDON_DEFAULTS = {
  cilium: {
    chart: "cilium",
    version: "1.18.4",
    repository: "https://helm.cilium.io",
  },
  kubeletServingCertApprover: {
    // Upstream ships plain manifests, no chart: `repository` is the base the pinned
    // `v<version>/deploy/standalone-install.yaml` is read from (a mirror for air-gapped sites).
    version: "0.11.0",
    repository: "https://raw.githubusercontent.com/alex1989hu/kubelet-serving-cert-approver",
    image: "ghcr.io/alex1989hu/kubelet-serving-cert-approver",
  },
  metricsServer: {
    chart: "metrics-server",
    version: "3.13.0",
    repository: "https://kubernetes-sigs.github.io/metrics-server",
  },
} as const;
