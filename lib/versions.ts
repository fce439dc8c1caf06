// Every pinned version and catalogue lives here, so Renovate (and a reviewer) finds them in one place.

/** Talos release a new stack gets when it names none. */
export const DEFAULT_TALOS_VERSION = "v1.14.1";
/** Kubernetes release a new stack gets when it names none. */
export const DEFAULT_KUBERNETES_VERSION = "1.37.0";

/** The public Image Factory; mirrored or self-hosted factories override it per stack. */
export const DEFAULT_IMAGE_FACTORY_HOST = "factory.talos.dev";

/** The extension every image carries: CPU microcode updates are not optional on this platform. */
export const REQUIRED_EXTENSION = "siderolabs/intel-ucode";

/**
 * Kubernetes minor versions each Talos minor supports (Talos support matrix).
 * A Talos minor missing here is refused rather than guessed: add its row when adopting it.
 * test/versions-compat.test.ts checks every row against Talos' config library's own data
 * (`talosvalidate -support`, machinery's compatibility packages).
 */
export const KUBERNETES_SUPPORT: Readonly<Record<string, { min: string; max: string }>> = {
  "1.7": { min: "1.25", max: "1.30" },
  "1.8": { min: "1.26", max: "1.31" },
  "1.9": { min: "1.27", max: "1.32" },
  "1.10": { min: "1.28", max: "1.33" },
  "1.11": { min: "1.29", max: "1.34" },
  "1.12": { min: "1.30", max: "1.35" },
  "1.13": { min: "1.31", max: "1.36" },
  "1.14": { min: "1.32", max: "1.37" },
};

/**
 * The oldest release each Talos minor installs over (its installer's pre-flight check, machinery's
 * MinimumHostUpgradeVersion): a cluster further behind goes through a release between
 * (`upgrade.path`). test/versions-compat.test.ts checks every row against the library.
 */
export const UPGRADE_FROM: Readonly<Record<string, string>> = {
  "1.7": "1.4.0",
  "1.8": "1.5.0",
  "1.9": "1.8.0",
  "1.10": "1.8.0",
  "1.11": "1.9.0",
  "1.12": "1.10.0",
  "1.13": "1.11.0",
  "1.14": "1.12.0",
};

/** A release's numbers ([1, 11, 5] for v1.11.5); undefined for text that is not one. */
function releaseNumbers(version: string): number[] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Whether release a is older than b (v1.11.5 < v1.13.9); false when either is not a release. */
export function olderRelease(a: string, b: string): boolean {
  const x = releaseNumbers(a);
  const y = releaseNumbers(b);
  if (x === undefined || y === undefined) return false;
  for (let i = 0; i < 3; i++) if ((x[i] as number) !== (y[i] as number)) return (x[i] as number) < (y[i] as number);
  return false;
}

/** Why Talos `to` does not install over `from`, or undefined when it does (or is not known). */
export function upgradeRefusal(from: string, to: string): string | undefined {
  const minor = talosMinor(to);
  const oldest = minor === undefined ? undefined : UPGRADE_FROM[minor];
  if (oldest === undefined || !olderRelease(from, `v${oldest}`)) return undefined;
  return `Talos ${minor} installs only over ${oldest} or later, and ${from} is older`;
}

/** The README's table of supported releases, as Markdown rows, from the two tables above. */
export function supportTable(): string {
  const rows = Object.keys(KUBERNETES_SUPPORT).map((m) => {
    const k = KUBERNETES_SUPPORT[m] as { min: string; max: string };
    return `| ${m} | ${k.min} to ${k.max} | ${UPGRADE_FROM[m] ?? "?"} |`;
  });
  return ["| Talos | Kubernetes | installs over (oldest) |", "| ----- | ---------- | ---------------------- |", ...rows].join("\n");
}

/**
 * Official system extensions of the Image Factory (siderolabs/extensions), with the Talos minors
 * that publish each: `from` the first, `until` the last when a later release dropped or renamed
 * it. Read from the build targets (Makefile TARGETS and NONFREE_TARGETS) of the latest patch tag
 * of each minor: v1.7.7, v1.8.4, v1.9.6, v1.10.9, v1.11.6, v1.12.11, v1.13.9, and for 1.14 its last
 * tag in the extensions repository read here, v1.14.0-rc.1. Within a minor, patches only ever add
 * names (youki arrived in 1.10.1, gpio-pinctrl in 1.12.2), so a release candidate's list is a
 * lower bound of its minor's.
 *
 * The factory accepts any name when a schematic is posted; an unknown one fails only when an
 * installer or ISO is built for a release ("official extension ... is not available for Talos
 * version ..."), that is on the node during its install or upgrade. So the stack config refuses a
 * name its release does not publish.
 */
export const OFFICIAL_EXTENSIONS: Readonly<Record<string, { from: string; until?: string }>> = {
  "siderolabs/amazon-ena": { from: "1.10" },
  "siderolabs/amd-ucode": { from: "1.7" },
  "siderolabs/amdgpu": { from: "1.9" },
  "siderolabs/amdgpu-firmware": { from: "1.7", until: "1.8" },
  "siderolabs/binfmt-misc": { from: "1.7" },
  "siderolabs/bird2": { from: "1.12" },
  "siderolabs/bnx2-bnx2x": { from: "1.7" },
  "siderolabs/btrfs": { from: "1.7" },
  "siderolabs/chelsio-drivers": { from: "1.7" },
  "siderolabs/chelsio-firmware": { from: "1.7" },
  "siderolabs/cloudflared": { from: "1.9" },
  "siderolabs/crun": { from: "1.8" },
  "siderolabs/ctr": { from: "1.10" },
  "siderolabs/drbd": { from: "1.7" },
  "siderolabs/dvb-cx23885": { from: "1.9" },
  "siderolabs/dvb-m88ds3103": { from: "1.11" },
  "siderolabs/ecr-credential-provider": { from: "1.7" },
  "siderolabs/fuse3": { from: "1.7" },
  "siderolabs/gasket-driver": { from: "1.7" },
  "siderolabs/glibc": { from: "1.9" },
  "siderolabs/gpio-pinctrl": { from: "1.12" },
  "siderolabs/gvisor": { from: "1.7" },
  "siderolabs/gvisor-debug": { from: "1.7" },
  "siderolabs/hailort": { from: "1.11" },
  "siderolabs/harbor-credential-provider": { from: "1.14" },
  "siderolabs/hello-world-service": { from: "1.7" },
  "siderolabs/hyperv-guest-agent": { from: "1.14" },
  "siderolabs/i915": { from: "1.9" },
  "siderolabs/i915-ucode": { from: "1.7", until: "1.8" },
  "siderolabs/intel-ice-firmware": { from: "1.7" },
  "siderolabs/intel-npu": { from: "1.13" },
  "siderolabs/intel-ucode": { from: "1.7" },
  "siderolabs/iscsi-tools": { from: "1.7" },
  "siderolabs/joydev": { from: "1.13" },
  "siderolabs/kata-containers": { from: "1.7" },
  "siderolabs/kata-containers-snp": { from: "1.14" },
  "siderolabs/lldpd": { from: "1.9" },
  "siderolabs/mdadm": { from: "1.7" },
  "siderolabs/mei": { from: "1.8" },
  "siderolabs/mellanox-mstflint": { from: "1.12" },
  "siderolabs/metal-agent": { from: "1.9" },
  "siderolabs/multipath-tools": { from: "1.12" },
  "siderolabs/nebula": { from: "1.10" },
  "siderolabs/netbird": { from: "1.12" },
  "siderolabs/newt": { from: "1.11" },
  "siderolabs/nfs-utils": { from: "1.12" },
  "siderolabs/nfsd": { from: "1.10" },
  "siderolabs/nfsrahead": { from: "1.11" },
  "siderolabs/nonfree-kmod-nvidia": { from: "1.7", until: "1.7" },
  "siderolabs/nonfree-kmod-nvidia-lts": { from: "1.8" },
  "siderolabs/nonfree-kmod-nvidia-production": { from: "1.8" },
  "siderolabs/nut-client": { from: "1.7" },
  "siderolabs/nvidia-container-toolkit": { from: "1.7", until: "1.7" },
  "siderolabs/nvidia-container-toolkit-lts": { from: "1.8" },
  "siderolabs/nvidia-container-toolkit-production": { from: "1.8" },
  "siderolabs/nvidia-fabricmanager": { from: "1.7", until: "1.7" },
  "siderolabs/nvidia-fabricmanager-lts": { from: "1.8" },
  "siderolabs/nvidia-fabricmanager-production": { from: "1.8" },
  "siderolabs/nvidia-gdrdrv-device": { from: "1.12" },
  "siderolabs/nvidia-open-gpu-kernel-modules": { from: "1.7", until: "1.7" },
  "siderolabs/nvidia-open-gpu-kernel-modules-lts": { from: "1.8" },
  "siderolabs/nvidia-open-gpu-kernel-modules-production": { from: "1.8" },
  "siderolabs/nvme-cli": { from: "1.10" },
  "siderolabs/panfrost": { from: "1.10" },
  "siderolabs/px-fuse": { from: "1.13" },
  "siderolabs/qemu-guest-agent": { from: "1.7" },
  "siderolabs/qlogic-firmware": { from: "1.7" },
  "siderolabs/realtek-firmware": { from: "1.7" },
  "siderolabs/revpi-firmware": { from: "1.10" },
  "siderolabs/rockchip-rknn": { from: "1.13" },
  "siderolabs/soci-snapshotter": { from: "1.12" },
  "siderolabs/spin": { from: "1.7" },
  "siderolabs/stargz-snapshotter": { from: "1.7" },
  "siderolabs/tailscale": { from: "1.7" },
  "siderolabs/tenstorrent": { from: "1.11" },
  "siderolabs/thunderbolt": { from: "1.7" },
  "siderolabs/trident-iscsi-tools": { from: "1.12" },
  "siderolabs/uhid": { from: "1.13" },
  "siderolabs/uinput": { from: "1.8" },
  "siderolabs/usb-audio-drivers": { from: "1.12" },
  "siderolabs/usb-modem-drivers": { from: "1.7" },
  "siderolabs/util-linux-tools": { from: "1.7" },
  "siderolabs/v4l-uvc-drivers": { from: "1.7" },
  "siderolabs/vc4": { from: "1.10" },
  "siderolabs/vmtoolsd-guest-agent": { from: "1.7" },
  "siderolabs/wasmedge": { from: "1.7" },
  "siderolabs/xdma-driver": { from: "1.10" },
  "siderolabs/xe": { from: "1.12" },
  "siderolabs/xen-guest-agent": { from: "1.7" },
  "siderolabs/youki": { from: "1.10" },
  "siderolabs/zerotier": { from: "1.10" },
  "siderolabs/zfs": { from: "1.7" },
};

/** The minor ("1.11") of a Talos release ("v1.11.5"), or undefined for text that is not one. */
export function talosMinor(version: string): string | undefined {
  return /^v(\d+\.\d+)\.\d+/.exec(version)?.[1];
}

const minorNumber = (minor: string) => Number(minor.split(".")[1]);

/** Whether Talos minor `a` is at least minor `b` (both "1.N"). */
export const minorAtLeast = (a: string, b: string) => minorNumber(a) >= minorNumber(b);

/**
 * Why a declared Talos release is refused as a downgrade across minors from the cluster's config
 * contract (the release the cluster was created with, which its machine secrets keep), or
 * undefined. Every node has run at least the contract's minor since it was installed; Talos does
 * not support going back a minor, and its etcd may not start on the newer etcd's data (1.11 runs
 * etcd 3.6, 1.10 etcd 3.5). Patch releases within a minor may go back. Which release each node
 * *runs* now (a cluster upgraded since its creation) only the nodes can say.
 */
export function talosDowngrade(declared: string, contract: string): string | undefined {
  const to = talosMinor(declared);
  const from = talosMinor(contract);
  if (to === undefined || from === undefined || minorAtLeast(to, from)) return undefined;
  return `talos-cluster:talosVersion: ${declared} is a downgrade from Talos ${from}, the release the cluster was created with (its machine secrets' config contract, ${contract}): Talos does not go back a minor release, and its etcd may not start on the data of a newer one (1.11's etcd 3.6 data does not start on 1.10's etcd 3.5); declare a ${from} release or later`;
}

/**
 * The Talos config library that renders every machine config, judges it at preview and applies it
 * (talosnode, talosvalidate: machinery, one version for the project's Go modules, TALOS_LIBRARY_VERSION
 * in scripts/toolchain.env; test/versions-compat.test.ts checks the two agree). The program writes
 * what it owns in the shape this library generates for the cluster's contract (lib/patches.ts),
 * since the library refuses the old field beside the document it generates. The talos plugin's
 * own library (v1.9.2, in terraform-provider-talos v0.7.1) makes the machine secrets, bootstraps
 * and fetches the kubeconfig; it never touches a config.
 */
export const CONFIG_LIBRARY = { version: "v1.14.1", minor: "1.14" } as const;

/**
 * Multi-document machine-config kinds (apiVersion v1alpha1), with the Talos minor whose config
 * library first decodes each (registry.Register in pkg/machinery/config/types, per release tag:
 * read up to v1.12.0, v1.13.9 and v1.14.1). talosplugin's Go test checks this table against the
 * plugin's library: it decodes every kind up to its minor and none after.
 */
export const CONFIG_DOCUMENT_KINDS: Readonly<Record<string, string>> = {
  // config-document-kinds:begin
  SideroLinkConfig: "1.5",
  EventSinkConfig: "1.5",
  KmsgLogConfig: "1.5",
  NetworkDefaultActionConfig: "1.6",
  NetworkRuleConfig: "1.6",
  ExtensionServiceConfig: "1.7",
  WatchdogTimerConfig: "1.7",
  KubeSpanEndpointsConfig: "1.8",
  TrustedRootsConfig: "1.8",
  VolumeConfig: "1.8",
  EthernetConfig: "1.10",
  PCIDriverRebindConfig: "1.10",
  UserVolumeConfig: "1.10",
  ExistingVolumeConfig: "1.11",
  RawVolumeConfig: "1.11",
  SwapVolumeConfig: "1.11",
  ZswapConfig: "1.11",
  RegistryAuthConfig: "1.12",
  RegistryMirrorConfig: "1.12",
  RegistryTLSConfig: "1.12",
  BondConfig: "1.12",
  BridgeConfig: "1.12",
  DHCPv4Config: "1.12",
  DHCPv6Config: "1.12",
  DummyLinkConfig: "1.12",
  HCloudVIPConfig: "1.12",
  HostnameConfig: "1.12",
  Layer2VIPConfig: "1.12",
  LinkConfig: "1.12",
  LinkAliasConfig: "1.12",
  ResolverConfig: "1.12",
  StaticHostConfig: "1.12",
  TimeSyncConfig: "1.12",
  VLANConfig: "1.12",
  WireguardConfig: "1.12",
  OOMConfig: "1.12",
  BlackholeRouteConfig: "1.13",
  EnvironmentConfig: "1.13",
  ExternalVolumeConfig: "1.13",
  ImageVerificationConfig: "1.13",
  KubeSpanConfig: "1.13",
  RoutingRuleConfig: "1.13",
  TCPProbeConfig: "1.13",
  VRFConfig: "1.13",
  BGPInstanceConfig: "1.14",
  CRIBaseRuntimeSpecConfig: "1.14",
  CRICustomizationConfig: "1.14",
  ContainerConfig: "1.14",
  DiscoveryIdentityConfig: "1.14",
  DiscoveryServiceConfig: "1.14",
  EtcFileConfig: "1.14",
  FilesystemScrubConfig: "1.14",
  FilesystemTrimConfig: "1.14",
  HTTPProbeConfig: "1.14",
  ImageCacheConfig: "1.14",
  KernelModuleConfig: "1.14",
  KubeAPIServerCAConfig: "1.14",
  KubeAPIServerConfig: "1.14",
  KubeAdmissionControlConfig: "1.14",
  KubeAggregatorCAConfig: "1.14",
  KubeAuditPolicyConfig: "1.14",
  KubeAuthenticationConfig: "1.14",
  KubeAuthorizerConfig: "1.14",
  KubeClusterConfig: "1.14",
  KubeControllerManagerConfig: "1.14",
  KubeCoreDNSConfig: "1.14",
  KubeCredentialProviderConfig: "1.14",
  KubeEtcdEncryptionConfig: "1.14",
  KubeExternalManifestConfig: "1.14",
  KubeFlannelCNIConfig: "1.14",
  KubeInlineManifestConfig: "1.14",
  KubeNetworkConfig: "1.14",
  KubeNodeConfig: "1.14",
  KubePrismConfig: "1.14",
  KubeProxyConfig: "1.14",
  KubeSchedulerConfig: "1.14",
  KubeServiceAccountConfig: "1.14",
  KubeStaticPodConfig: "1.14",
  KubeTalosAPIAccessConfig: "1.14",
  KubeletConfig: "1.14",
  LVMLogicalVolumeConfig: "1.14",
  LVMVolumeGroupConfig: "1.14",
  RAIDArrayConfig: "1.14",
  SecurityProfileConfig: "1.14",
  SysctlConfig: "1.14",
  SysfsConfig: "1.14",
  UdevRulesConfig: "1.14",
  UnattendedInstallConfig: "1.14",
  VethConfig: "1.14",
  // config-document-kinds:end
};

/** The Talos minors of the support table that publish this extension; none for an unknown name. */
export function extensionReleases(name: string): string[] {
  const range = OFFICIAL_EXTENSIONS[name];
  if (range === undefined) return [];
  const until = range.until === undefined ? Number.POSITIVE_INFINITY : minorNumber(range.until);
  return Object.keys(KUBERNETES_SUPPORT).filter((m) => minorAtLeast(m, range.from) && minorNumber(m) <= until);
}

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
