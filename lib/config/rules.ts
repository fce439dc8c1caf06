// Rules across fields of the stack config, run on the typed sections that parsed (parse.ts), so a
// section the schema refused does not hide the problems of the others. Pure.
import { kubeletLabelRefusal } from "../kubelet-labels";
import { closest } from "../naming";
import { cidrContains, cidrsOverlap, parseCidr, parseIPv4 } from "../net";
import {
  CONFIG_DOCUMENT_KINDS,
  CONFIG_LIBRARY,
  extensionReleases,
  KUBERNETES_SUPPORT,
  minorAtLeast,
  OFFICIAL_EXTENSIONS,
  olderRelease,
  talosMinor,
  upgradeRefusal,
} from "../versions";
import { KUBERNETES_VERSION, type NodeConfig, normaliseEndpoint, type Patch, type StackInput, stackSchema } from "./schema";
import { FACTORY_URL_KEY, nodeRef, PROJECT } from "./source";

/**
 * A node of the stack's list with the fields that parsed: a node the schema refused in part still
 * has its name, role and the rest checked.
 */
export interface ParsedNode {
  index: number;
  node: Partial<NodeConfig>;
  /** Fields the schema refused (already reported); a rule that needs one of them stays silent. */
  refused: ReadonlySet<string>;
  /** The whole node, when every field parsed. */
  complete?: NodeConfig;
}

/** The sections of the stack that parsed; a section the schema refused is absent. */
export interface Sections extends Partial<Omit<StackInput, "nodes">> {
  /** The stack's nodes, each with what of it parsed; empty when `nodes` is not a list. */
  nodes: ParsedNode[];
  /** Whether `nodes` is a list at all. */
  nodeList: boolean;
  /** The talos plugin's talos:imageFactoryUrl as given, if the stack sets it. */
  factoryUrl?: unknown;
  /** Whether the stack sets imageFactoryHost itself (the section holds the default otherwise). */
  factoryHostGiven: boolean;
}

/** Every cross-field rule; problems refuse the stack, warnings do not. */
export function crossFieldRules(s: Sections, problems: string[], warnings: string[]): void {
  if (s.network?.vip !== undefined) checkVipLink(s.network.vip, problems);
  if (s.talosVersion !== undefined && s.kubernetesVersion !== undefined) checkVersions(s.talosVersion, s.kubernetesVersion, problems);
  if (s.extensions !== undefined) checkExtensions(s.extensions, s.talosVersion, problems);
  if (s.upgrade !== undefined && s.talosVersion !== undefined) checkUpgradePath(s.upgrade.path, s.talosVersion, s.extensions, problems);
  checkNodes(s, problems, warnings);
  if (s.network !== undefined) checkNetwork(s.network, s.nodes, s.endpoint, problems);
  checkVipAddressing(s, problems);
  const patches = patchesWithKeys(s);
  checkPatchDocuments(patches, s.talosVersion, problems);
  checkOwnedKeys(patches, s.addons, problems);
}

/**
 * The Image Factory host nodes install from. The talos plugin registers the schematic with the
 * factory at talos:imageFactoryUrl; when the stack sets that, the host follows from it, and an
 * imageFactoryHost set on purpose must name the same factory: otherwise nodes would pull an
 * installer from a factory that never saw the schematic. Undefined when the section was refused.
 */
export function factoryHost(s: Sections, problems: string[]): string | undefined {
  if (s.factoryUrl === undefined) return s.imageFactoryHost;
  const url = typeof s.factoryUrl === "string" ? URL.parse(s.factoryUrl) : null;
  const derived = url?.host ?? "";
  if (url === null || !["http:", "https:"].includes(url.protocol) || !stackSchema.shape.imageFactoryHost.safeParse(derived).success) {
    problems.push(
      `${FACTORY_URL_KEY}: ${JSON.stringify(s.factoryUrl)} is not the URL of an Image Factory, e.g. https://factory.talos.dev or http://10.0.0.5:8080`,
    );
    return s.imageFactoryHost;
  }
  if (!s.factoryHostGiven) return derived;
  if (s.imageFactoryHost === undefined) return undefined;
  // The same host and port however written: case and the scheme's default port do not count.
  if (URL.parse(`${url.protocol}//${s.imageFactoryHost}`)?.host !== derived) {
    problems.push(
      `${PROJECT}:imageFactoryHost: ${JSON.stringify(s.imageFactoryHost)} is not the factory of ${FACTORY_URL_KEY} ` +
        `(${JSON.stringify(s.factoryUrl)}, host ${derived}): nodes would install an image from a factory that never registered the schematic. ` +
        `Remove ${PROJECT}:imageFactoryHost to follow ${FACTORY_URL_KEY}, or set both to the same factory`,
    );
  }
  return s.imageFactoryHost;
}

/** Talos needs the VIP's link: by name or by what the hardware reports, one of the two. */
function checkVipLink(vip: NonNullable<StackInput["network"]["vip"]>, problems: string[]): void {
  if ((vip.interface === undefined) === (vip.deviceSelector === undefined)) {
    problems.push(
      `${PROJECT}:network.vip: ${
        vip.interface === undefined
          ? "needs the link the VIP lives on: interface (e.g. enp1s0; `talosctl get links --insecure -n <node>` lists a node's links) or deviceSelector (e.g. { busPath: 0000:01:00.0 })"
          : "set either interface or deviceSelector, not both"
      }`,
    );
  }
}

function checkVersions(talos: string, kubernetes: string, problems: string[]): void {
  const k = KUBERNETES_VERSION.exec(kubernetes);
  const minor = talosMinor(talos);
  if (!k || minor === undefined) return;
  const support = KUBERNETES_SUPPORT[minor];
  if (support === undefined) {
    problems.push(
      `${PROJECT}:talosVersion: Talos ${minor} is not in the support table (${Object.keys(KUBERNETES_SUPPORT).join(", ")}); add its row to lib/versions.ts after checking its release notes`,
    );
    return;
  }
  const minorOf = (v: string) => Number(v.split(".")[1]);
  const kMinor = Number(k[2]);
  if (Number(k[1]) !== 1 || kMinor < minorOf(support.min) || kMinor > minorOf(support.max)) {
    problems.push(
      `${PROJECT}:kubernetesVersion: Kubernetes ${kubernetes} is not supported by Talos ${talos}; it supports ${support.min} to ${support.max}`,
    );
  }
}

/**
 * The declared way to talosVersion: each release in order, each installable over the one before
 * (the installer's own pre-flight, UPGRADE_FROM), in the support table, publishing the stack's
 * extensions (each step installs the same schematic). Which release each node runs, and so where
 * on the way it starts, only the nodes say: the rollout's pre-flight checks that at preview.
 */
function checkUpgradePath(path: string[], talosVersion: string, extensions: string[] | undefined, problems: string[]): void {
  path.forEach((release, i) => {
    const key = `${PROJECT}:upgrade.path[${i}]`;
    const minor = talosMinor(release);
    const before = path[i - 1];
    if (minor === undefined) return;
    if (KUBERNETES_SUPPORT[minor] === undefined) {
      problems.push(`${key}: Talos ${minor} is not in the support table (${Object.keys(KUBERNETES_SUPPORT).join(", ")})`);
    } else if (!olderRelease(release, talosVersion)) {
      problems.push(
        `${key}: ${release} is not older than ${PROJECT}:talosVersion (${talosVersion}); the path lists the releases on the way to it`,
      );
    } else if (before !== undefined && !olderRelease(before, release)) {
      problems.push(`${key}: ${release} does not come after ${before}; list the releases oldest first`);
    } else if (before !== undefined && upgradeRefusal(before, release) !== undefined) {
      problems.push(`${key}: ${upgradeRefusal(before, release)} (upgrade.path[${i - 1}]); add a release between them`);
    } else {
      for (const name of extensions ?? []) {
        if (!extensionReleases(name).includes(minor)) {
          problems.push(
            `${key}: the extension ${name} is not published for Talos ${minor}, so the factory would fail to build the step's installer`,
          );
        }
      }
    }
  });
  const last = path[path.length - 1];
  if (last !== undefined && olderRelease(last, talosVersion) && upgradeRefusal(last, talosVersion) !== undefined) {
    problems.push(
      `${PROJECT}:talosVersion: ${upgradeRefusal(last, talosVersion)} (the last release of ${PROJECT}:upgrade.path); add a release between them`,
    );
  }
}

function checkExtensions(extensions: string[], talosVersion: string | undefined, problems: string[]): void {
  const minor = talosVersion === undefined ? undefined : talosMinor(talosVersion);
  extensions.forEach((ext, i) => {
    const key = `${PROJECT}:extensions[${i}]`;
    const releases = extensionReleases(ext);
    if (releases.length === 0) {
      const meant =
        extensionReleases(`siderolabs/${ext}`).length > 0 ? `siderolabs/${ext}` : closest(ext, Object.keys(OFFICIAL_EXTENSIONS));
      const hint = meant === undefined ? "" : ` (did you mean ${meant}?)`;
      problems.push(`${key}: ${JSON.stringify(ext)} is not an official Image Factory extension${hint}; see lib/versions.ts for the list`);
    } else if (minor !== undefined && minor in KUBERNETES_SUPPORT && !releases.includes(minor)) {
      problems.push(
        `${key}: ${ext} is not published for Talos ${minor}, so the factory would fail to build the installer; the releases that have it: ${releases.join(", ")}`,
      );
    }
  });
}

function checkNodes(s: Sections, problems: string[], warnings: string[]): void {
  const byName = new Map<string, ParsedNode>();
  const byAddress = new Map<string, ParsedNode>();
  for (const parsed of s.nodes) {
    const { index: i, node, refused } = parsed;
    const ref = `${PROJECT}:${nodeRef(i, node.name)}`;
    if (node.name !== undefined) {
      const first = byName.get(node.name);
      if (first !== undefined) {
        problems.push(
          `${PROJECT}:nodes[${i}].name: ${JSON.stringify(node.name)} is already used by nodes[${first.index}]; node names must be unique`,
        );
      } else byName.set(node.name, parsed);
    }
    if (node.address !== undefined) {
      const sameAddress = byAddress.get(node.address);
      if (sameAddress !== undefined) {
        problems.push(
          `${ref}.address: ${node.address} is already used by ${nodeRef(sameAddress.index, sameAddress.node.name)}; each node needs its own address`,
        );
      } else byAddress.set(node.address, parsed);
    }
    if (node.role === "worker") {
      for (const key of Object.keys(node.labels ?? {})) {
        const refusal = kubeletLabelRefusal(key);
        if (refusal === undefined) continue;
        problems.push(
          `${ref}.labels: ${JSON.stringify(key)} cannot be set on a worker: Talos labels a worker with its kubelet's credentials, and Kubernetes' NodeRestriction refuses this key (${refusal}), and with it every other label of the node; use a key under node.kubernetes.io/ or a domain of your own`,
        );
      }
    }
    if (refused.has("installDisk") || refused.has("installDiskSelector")) continue;
    if (node.installDisk !== undefined && node.installDiskSelector !== undefined) {
      problems.push(`${ref}: set either installDisk or installDiskSelector, not both`);
    } else if (node.installDisk === undefined && node.installDiskSelector === undefined) {
      problems.push(
        `${ref}: set installDisk (e.g. /dev/nvme0n1) or installDiskSelector (e.g. { type: nvme }); without one Talos installs to /dev/sda, wiping whatever is there`,
      );
    }
  }
  // The count needs every node's role: a node whose role the schema refused might be a control plane.
  if (!s.nodeList || s.nodes.some((n) => n.node.role === undefined)) return;
  const controlPlanes = s.nodes.filter((n) => n.node.role === "controlplane").length;
  if (controlPlanes === 0) {
    problems.push(`${PROJECT}:nodes: no node has role "controlplane"; a cluster needs at least one (three for HA)`);
  } else if (controlPlanes === 2) {
    // Talos refuses to upgrade either control plane of a 2-member etcd (etcd.go ValidateForUpgrade,
    // no way around it but talosctl's --force), and a config reboot of either stops etcd's quorum.
    problems.push(
      `${PROJECT}:nodes: 2 control planes cannot be upgraded: Talos refuses with "etcd member count(2) is insufficient to maintain quorum if upgrade commences", and a reboot of either loses etcd's quorum; declare 1 or 3 (add two at once when growing from 1)`,
    );
  } else if (controlPlanes % 2 === 0) {
    warnings.push(
      `${PROJECT}:nodes: ${controlPlanes} control planes is an even etcd member count: it tolerates no more failures than ${controlPlanes - 1}; use an odd number`,
    );
  }
}

type Cidr = NonNullable<ReturnType<typeof parseCidr>>;

function checkNetwork(network: StackInput["network"], nodes: ParsedNode[], endpoint: string | undefined, problems: string[]): void {
  const named = (key: "podSubnets" | "serviceSubnets"): { key: string; cidr: Cidr }[] =>
    network[key].flatMap((v, i) => {
      const c = parseCidr(v);
      return c ? [{ key: `${PROJECT}:network.${key}[${i}]`, cidr: c }] : [];
    });
  const pods = named("podSubnets");
  const services = named("serviceSubnets");
  const nodeSubnetText = network.nodeSubnet;
  const nodeSubnet = nodeSubnetText === undefined ? undefined : parseCidr(nodeSubnetText);
  const addresses = nodes.flatMap(({ index, node }) => {
    const value = node.address === undefined ? undefined : parseIPv4(node.address);
    return value === undefined || node.address === undefined ? [] : [{ index, name: node.name, value, text: node.address }];
  });

  for (const p of pods) {
    for (const s of services) {
      if (cidrsOverlap(p.cidr, s.cidr)) problems.push(`${s.key}: overlaps ${p.key}; pod and service ranges must be disjoint`);
    }
  }
  if (nodeSubnet) {
    for (const r of [...pods, ...services]) {
      if (cidrsOverlap(r.cidr, nodeSubnet))
        problems.push(`${r.key}: overlaps ${PROJECT}:network.nodeSubnet; pick a range the nodes do not use`);
    }
    for (const a of addresses) {
      if (!cidrContains(nodeSubnet, a.value)) {
        problems.push(`${PROJECT}:${nodeRef(a.index, a.name)}.address: ${a.text} is outside network.nodeSubnet ${nodeSubnetText}`);
      }
    }
  }

  const vipText = network.vip?.address;
  const vipAddress = vipText === undefined ? undefined : parseIPv4(vipText);
  if (vipText === undefined || vipAddress === undefined) return;
  if (!nodeSubnet) {
    problems.push(
      `${PROJECT}:network.nodeSubnet: is required when network.vip is set, so the VIP can be checked against the nodes' subnet (e.g. 10.0.0.0/24)`,
    );
  } else if (!cidrContains(nodeSubnet, vipAddress)) {
    problems.push(
      `${PROJECT}:network.vip.address: ${vipText} is outside the nodes' subnet ${nodeSubnetText}; a Talos VIP must share the control planes' L2 network`,
    );
  }
  const clash = addresses.find((a) => a.value === vipAddress);
  if (clash) {
    problems.push(
      `${PROJECT}:network.vip.address: ${vipText} is also ${nodeRef(clash.index, clash.name)}.address; the VIP must be a free address`,
    );
  }
  const endpointHost = endpoint === undefined ? undefined : normaliseEndpoint(endpoint)?.host;
  if (endpointHost !== undefined && parseIPv4(endpointHost) !== undefined && endpointHost !== vipText) {
    problems.push(
      `${PROJECT}:endpoint: ${endpoint} differs from network.vip.address ${vipText}; with a VIP the endpoint should be the VIP`,
    );
  }
}

/**
 * `network.vip.dhcp: false` leaves the VIP's link to the control planes' own patches: Talos runs
 * no default DHCP on a link an interfaces entry names, and merges entries by their exact link
 * (the same `interface`, or an equal `deviceSelector`). Each control plane must therefore give
 * that same link static `addresses` (or `dhcp: true`) itself, or it has no address after install.
 */
function checkVipAddressing(s: Sections, problems: string[]): void {
  const vip = s.network?.vip;
  if (vip === undefined || vip.dhcp || s.patches === undefined) return;
  const link = vip.interface !== undefined ? { interface: vip.interface } : { deviceSelector: vip.deviceSelector };
  const sameLink = (entry: Record<string, unknown>) =>
    "interface" in link ? entry.interface === link.interface : canonical(entry.deviceSelector) === canonical(link.deviceSelector);
  const addressed = (entry: Record<string, unknown>) =>
    entry.dhcp === true || (Array.isArray(entry.addresses) && entry.addresses.some((a) => typeof a === "string"));
  const shared = [...s.patches.all, ...s.patches.controlplane];
  const described = "interface" in link ? `interface ${String(link.interface)}` : `deviceSelector ${canonical(link.deviceSelector)}`;
  for (const { index: i, node } of s.nodes) {
    if (node.role !== "controlplane" || node.patches === undefined) continue;
    const entries = [...shared, ...node.patches].flatMap((patch) => interfacesOf(patch));
    if (entries.some((e) => sameLink(e) && addressed(e))) continue;
    problems.push(
      `${PROJECT}:network.vip.dhcp: false leaves ${nodeRef(i, node.name)} without an address on the VIP's link (${described}): an interfaces entry that names a link turns off Talos' default DHCP on it. Give that link static addresses for the same ${"interface" in link ? "interface" : "deviceSelector"} in patches.controlplane or nodes[${i}].patches (machine.network.interfaces[].addresses), or leave network.vip.dhcp at its default, true`,
    );
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function interfacesOf(patch: unknown): Record<string, unknown>[] {
  const machine = isRecord(patch) && isRecord(patch.machine) ? patch.machine : {};
  const network = isRecord(machine.network) ? machine.network : {};
  return Array.isArray(network.interfaces) ? network.interfaces.filter(isRecord) : [];
}

/** JSON with sorted keys: two selectors that differ only in key order are the same link. */
function canonical(value: unknown): string {
  if (!isRecord(value)) return JSON.stringify(value) ?? "undefined";
  return `{${Object.keys(value)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
    .join(",")}}`;
}

/** Every machine-config patch of the stack that parsed, with the key a user finds it under. */
function patchesWithKeys(s: Sections): { key: string; patch: Patch }[] {
  const found: { key: string; patch: Patch }[] = [];
  const collect = (list: Patch[] | undefined, key: string) => {
    for (const [i, patch] of (list ?? []).entries()) found.push({ key: `${key}[${i}]`, patch });
  };
  if (s.patches !== undefined) {
    for (const group of ["all", "controlplane", "worker"] as const) collect(s.patches[group], `${PROJECT}:patches.${group}`);
  }
  for (const { index, node } of s.nodes) collect(node.patches, `${PROJECT}:${nodeRef(index, node.name)}.patches`);
  return found;
}

/**
 * Machine-config keys the program sets itself, and the stack key to use instead: in v1alpha1's
 * shape, and (`kind`) in the documents that hold them for a Talos 1.12 or 1.14 contract
 * (lib/patches.ts). An empty path is the whole document.
 */
const OWNED_KEYS: { kind?: string; path: string[]; owner: string; whenCilium?: boolean }[] = [
  {
    path: ["machine", "install", "image"],
    owner: "the program derives it from the schematic: set extensions, talosVersion or imageFactoryHost",
  },
  { path: ["machine", "install", "disk"], owner: "use nodes[].installDisk" },
  { path: ["machine", "install", "diskSelector"], owner: "use nodes[].installDiskSelector" },
  { path: ["machine", "network", "hostname"], owner: "the node's name is its hostname: use nodes[].name" },
  { path: ["machine", "nodeLabels"], owner: "use nodes[].labels" },
  { path: ["machine", "nodeTaints"], owner: "use nodes[].taints" },
  { path: ["cluster", "network", "podSubnets"], owner: "use network.podSubnets" },
  { path: ["cluster", "network", "serviceSubnets"], owner: "use network.serviceSubnets" },
  {
    path: ["cluster", "network", "cni"],
    owner: "Cilium is the CNI: set addons.cilium.enabled to false to choose Talos' own",
    whenCilium: true,
  },
  { path: ["cluster", "proxy"], owner: "Cilium replaces kube-proxy: set addons.cilium.enabled to false to keep it", whenCilium: true },
  { kind: "HostnameConfig", path: [], owner: "the node's name is its hostname: use nodes[].name" },
  {
    kind: "UnattendedInstallConfig",
    path: [],
    owner:
      "the program installs each node through machine.install: use nodes[].installDisk or nodes[].installDiskSelector, and extensions, talosVersion or imageFactoryHost for the image",
  },
  { kind: "KubeNetworkConfig", path: ["podSubnets"], owner: "use network.podSubnets" },
  { kind: "KubeNetworkConfig", path: ["serviceSubnets"], owner: "use network.serviceSubnets" },
  { kind: "KubeNodeConfig", path: ["labels"], owner: "use nodes[].labels" },
  { kind: "KubeNodeConfig", path: ["taints"], owner: "use nodes[].taints" },
  {
    kind: "KubeFlannelCNIConfig",
    path: [],
    owner: "Cilium is the CNI: set addons.cilium.enabled to false to choose Talos' own",
    whenCilium: true,
  },
  {
    kind: "KubeProxyConfig",
    path: [],
    owner: "Cilium replaces kube-proxy: set addons.cilium.enabled to false to keep it",
    whenCilium: true,
  },
];

/**
 * A patch that sets what the program sets itself would fight it (last writer wins, silently).
 * Keys owned only while Cilium is on are judged once the addons section parsed.
 */
function checkOwnedKeys(patches: { key: string; patch: Patch }[], addons: StackInput["addons"] | undefined, problems: string[]): void {
  for (const { key, patch } of patches) {
    for (const owned of OWNED_KEYS) {
      if (owned.whenCilium && !addons?.cilium.enabled) continue;
      if (patch.kind !== owned.kind) continue;
      let at: unknown = patch;
      for (const part of owned.path) at = isRecord(at) ? at[part] : undefined;
      if (at === undefined) continue;
      const what = owned.kind === undefined ? owned.path.join(".") : [owned.kind, ...owned.path].join(".");
      problems.push(`${key}: ${owned.path.length === 0 ? `the ${what} document` : what} is set by the program; ${owned.owner}`);
    }
  }
}

/**
 * A patch that is a config document of its own (kind + apiVersion) must be one the config library
 * knows and the declared Talos release decodes: a node refuses a kind newer than its release in
 * every config the patch reaches ("not registered").
 */
function checkPatchDocuments(patches: { key: string; patch: Patch }[], talosVersion: string | undefined, problems: string[]): void {
  const release = talosVersion === undefined ? undefined : talosMinor(talosVersion);
  for (const { key, patch } of patches) {
    const kind = patch.kind;
    if (kind === undefined) continue;
    if (typeof kind !== "string") {
      problems.push(`${key}.kind: must be a config document kind such as VolumeConfig`);
      continue;
    }
    const since = CONFIG_DOCUMENT_KINDS[kind];
    if (since === undefined) {
      problems.push(
        `${key}: unknown config document kind ${JSON.stringify(kind)}; Talos ${CONFIG_LIBRARY.version}'s config library knows ${Object.keys(CONFIG_DOCUMENT_KINDS).join(", ")}`,
      );
    } else if (release !== undefined && !minorAtLeast(release, since)) {
      problems.push(
        `${key}: ${kind} is a Talos ${since} config document, and nodes on Talos ${release} (talos-cluster:talosVersion ${talosVersion}) cannot decode it ("${kind}" "v1alpha1": not registered); declare Talos ${since} or later, or express it in the machine config`,
      );
    } else if (patch.apiVersion !== "v1alpha1") {
      problems.push(`${key}.apiVersion: a ${kind} document needs apiVersion: v1alpha1`);
    }
  }
}
