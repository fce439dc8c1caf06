// Stack config: types, defaults and validation. Pure: takes the raw key/value map Pulumi holds for
// the project and returns one typed object, or throws with every problem listed at once.
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { z } from "zod";
import { kubeletLabelRefusal } from "../kubelet-labels";
import { closest } from "../naming";
import { cidrContains, cidrsOverlap, isDnsName, isHostnameLabel, parseCidr, parseIPv4 } from "../net";
import {
  ADDON_DEFAULTS,
  CONFIG_DOCUMENT_KINDS,
  DEFAULT_IMAGE_FACTORY_HOST,
  DEFAULT_KUBERNETES_VERSION,
  DEFAULT_TALOS_VERSION,
  extensionReleases,
  KUBERNETES_SUPPORT,
  minorAtLeast,
  OFFICIAL_EXTENSIONS,
  PLUGIN_CONFIG_LIBRARY,
  talosMinor,
} from "../versions";

/** Config namespace: the project name in Pulumi.yaml. */
export const PROJECT = "talos-cluster";

const TALOS_VERSION = /^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$/;
const KUBERNETES_VERSION = /^v?(\d+)\.(\d+)\.(\d+)$/;
// Go durations as the provider parses them: 90s, 10m, 1h30m.
const DURATION = /^(\d+h)?(\d+m)?(\d+s)?$/;
const CHART_VERSION = /^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/;
// Kubernetes label keys: optional DNS prefix, then a name of up to 63 characters.
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

const patch = z.record(z.string(), z.unknown(), {
  error: "must be a machine-config patch object (a YAML/JSON mapping)",
});

const ipv4 = z.string().refine((s) => parseIPv4(s) !== undefined, {
  error: (issue) => `${JSON.stringify(issue.input)} is not an IPv4 address`,
});
const cidr = z.string().refine((s) => parseCidr(s) !== undefined, {
  error: (issue) => `${JSON.stringify(issue.input)} is not an IPv4 CIDR with zero host bits (e.g. 10.244.0.0/16)`,
});

const taintSchema = z.strictObject({
  key: z.string().regex(LABEL_KEY, { error: "is not a valid Kubernetes taint key" }),
  value: z.string().regex(LABEL_VALUE, { error: "is not a valid Kubernetes taint value" }).optional(),
  effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"], {
    error: "must be one of NoSchedule, PreferNoSchedule, NoExecute",
  }),
});

const diskSelectorSchema = z
  .strictObject({
    size: z.string().optional(),
    model: z.string().optional(),
    serial: z.string().optional(),
    wwid: z.string().optional(),
    type: z.enum(["ssd", "hdd", "nvme", "sd"]).optional(),
    busPath: z.string().optional(),
  })
  .refine((s) => Object.keys(s).length > 0, { error: "must set at least one of size, model, serial, wwid, type, busPath" });

const nodeSchema = z.strictObject({
  name: z.string({ error: "is required: the node's hostname" }).refine(isHostnameLabel, {
    error: (issue) => `${JSON.stringify(issue.input)} is not a valid hostname (lower-case letters, digits and '-', at most 63)`,
  }),
  address: ipv4,
  role: z.enum(["controlplane", "worker"], { error: 'must be "controlplane" or "worker"' }),
  installDisk: z
    .string()
    // Talos resolves symlinks, so the stable /dev/disk/by-id and by-path names (with ':') work too.
    .regex(/^\/dev\/(?!.*\.\.)[A-Za-z0-9/_.:+-]+$/, {
      error: "must be a device path such as /dev/nvme0n1 or /dev/disk/by-id/nvme-<model>_<serial>",
    })
    .optional(),
  installDiskSelector: diskSelectorSchema.optional(),
  labels: z
    .record(
      z.string().regex(LABEL_KEY, { error: "is not a valid Kubernetes label key" }),
      z.string().regex(LABEL_VALUE, { error: "is not a valid Kubernetes label value" }),
    )
    .default({}),
  taints: z.array(taintSchema).default([]),
  patches: z.array(patch).default([]),
});

function addonDefault(defaults: { version: string; repository: string }) {
  return { enabled: true, version: defaults.version, repository: defaults.repository };
}

const addonSchema = (defaults: { version: string; repository: string }) =>
  z
    .strictObject({
      enabled: z.boolean({ error: "must be true or false" }).default(true),
      version: z.string().regex(CHART_VERSION, { error: "must be a chart version such as 1.2.3" }).default(defaults.version),
      repository: z
        .string()
        .regex(/^(https?|oci):\/\/\S+$/, { error: "must be an http(s):// or oci:// chart repository URL" })
        .default(defaults.repository),
    })
    .default(addonDefault(defaults));

const anyDuration = (example: string) =>
  z
    .string()
    .regex(DURATION, { error: `must be a duration such as ${example}, 90s or 1h30m` })
    .refine((d) => d !== "" && !/^(0+[hms])+$/.test(d), { error: `must be longer than zero, e.g. ${example}` });
const duration = (fallback: string) => anyDuration(fallback).default(fallback);

// How Talos finds the VIP's link: by name, or by what the hardware reports (Talos' deviceSelector).
// Metal and VMs use predictable names (eno1, enp1s0, ens18), rarely eth0; an entry naming a link
// the node lacks is ignored without a word, so there is no default to fall back on.
const vipDeviceSelectorSchema = z
  .strictObject({
    busPath: z.string().optional(),
    hardwareAddr: z.string().optional(),
    driver: z.string().optional(),
    physical: z.boolean({ error: "must be true or false" }).optional(),
  })
  .refine((s) => Object.keys(s).length > 0, { error: "must set at least one of busPath, hardwareAddr, driver, physical" });

const vipSchema = z
  .strictObject({
    address: ipv4,
    interface: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,15}$/, { error: "must be a link name such as enp1s0 or eno1" })
      .optional(),
    deviceSelector: vipDeviceSelectorSchema.optional(),
    // An interfaces entry that names a link, even for a VIP only, turns off Talos' default DHCP
    // on it (OperatorConfigController runs it only on links no config names), so the VIP's entry
    // asks for DHCP itself unless every control plane gives the link static addresses.
    dhcp: z.boolean({ error: "must be true or false" }).default(true),
  })
  .superRefine((vip, ctx) => {
    if ((vip.interface === undefined) === (vip.deviceSelector === undefined)) {
      ctx.addIssue({
        code: "custom",
        message:
          vip.interface === undefined
            ? "needs the link the VIP lives on: interface (e.g. enp1s0; `talosctl get links --insecure -n <node>` lists a node's links) or deviceSelector (e.g. { busPath: 0000:01:00.0 })"
            : "set either interface or deviceSelector, not both",
      });
    }
  });

const networkDefaults = { podSubnets: ["10.244.0.0/16"], serviceSubnets: ["10.96.0.0/12"] };

const stackSchema = z.strictObject({
  clusterName: z
    .string({ error: "is required: a name for the cluster, e.g. prod-eu1" })
    .refine(isHostnameLabel, { error: "must be lower-case letters, digits and '-', at most 63 characters" }),
  endpoint: z.string({
    error: "is required: the Kubernetes API address (a VIP, load balancer or DNS name), e.g. 10.0.0.10 or https://k8s.example.com:6443",
  }),
  talosVersion: z.string().regex(TALOS_VERSION, { error: "must be a Talos release such as v1.11.5" }).default(DEFAULT_TALOS_VERSION),
  kubernetesVersion: z
    .string()
    .regex(KUBERNETES_VERSION, { error: "must be a Kubernetes release such as 1.34.1" })
    .default(DEFAULT_KUBERNETES_VERSION),
  imageFactoryHost: z
    .string()
    .refine((h) => isDnsName(h.replace(/:\d+$/, "")) || parseIPv4(h.replace(/:\d+$/, "")) !== undefined, {
      error: "must be a host name (optionally with :port) of an Image Factory, e.g. factory.talos.dev",
    })
    .default(DEFAULT_IMAGE_FACTORY_HOST),
  extensions: z.array(z.string()).default([]),
  applyMode: z
    .enum(["auto", "no_reboot", "reboot", "staged"], {
      error: 'must be "auto" (reboot only when a change needs it), "no_reboot" (fail instead), "reboot" or "staged"',
    })
    .default("auto"),
  nodeTimeout: duration("10m"),
  // Bootstrap waits out a node's install: the installer pull, the disk write, a reboot with a
  // server's POST, and time sync. That is longer than any other node operation on bare metal.
  bootstrapTimeout: duration("20m"),
  // etcd, the API server and the VIP come up minutes after the bootstrap; the nodes turn Ready
  // once the CNI runs on them.
  kubernetesReadyTimeout: duration("15m"),
  nodes: z.array(nodeSchema, { error: "is required: a list of nodes, each with name, address and role" }),
  patches: z
    .strictObject({
      all: z.array(patch).default([]),
      controlplane: z.array(patch).default([]),
      worker: z.array(patch).default([]),
    })
    .default({ all: [], controlplane: [], worker: [] }),
  network: z
    .strictObject({
      podSubnets: z.array(cidr).min(1).default(networkDefaults.podSubnets),
      serviceSubnets: z.array(cidr).min(1).default(networkDefaults.serviceSubnets),
      nodeSubnet: cidr.optional(),
      vip: vipSchema.optional(),
    })
    .default(networkDefaults),
  upgrade: z
    .strictObject({
      maxUnavailableWorkers: z
        .number({ error: "must be a whole number of workers, at least 1" })
        .int({ error: "must be a whole number of workers, at least 1" })
        .min(1, { error: "must be at least 1: workers are changed this many at a time" })
        .default(1),
      snapshotDir: z
        .string()
        .min(1, { error: "must be a folder outside the checkout, e.g. /var/lib/talos-cluster/snapshots/prod" })
        .optional(),
      // A bare-metal reboot (firmware POST, image pull, etcd catching up) per node, with room to spare.
      healthTimeout: duration("15m"),
      rebootMode: z
        .enum(["default", "powercycle"], { error: 'must be "default" (kexec) or "powercycle" (through the firmware)' })
        .default("default"),
      // Through the cluster's Kubernetes API: in-place changes awaited, reboot-class applies drained.
      kubernetesChecks: z.boolean({ error: "must be true or false" }).default(true),
      // Unset: the drain gets healthTimeout.
      drainTimeout: anyDuration("15m").optional(),
    })
    .default({ maxUnavailableWorkers: 1, healthTimeout: "15m", rebootMode: "default", kubernetesChecks: true }),
  addons: z
    .strictObject({
      cilium: addonSchema(ADDON_DEFAULTS.cilium),
      kubeletServingCertApprover: addonSchema(ADDON_DEFAULTS.kubeletServingCertApprover),
      metricsServer: addonSchema(ADDON_DEFAULTS.metricsServer),
    })
    .default({
      cilium: addonDefault(ADDON_DEFAULTS.cilium),
      kubeletServingCertApprover: addonDefault(ADDON_DEFAULTS.kubeletServingCertApprover),
      metricsServer: addonDefault(ADDON_DEFAULTS.metricsServer),
    }),
});

type StackInput = z.output<typeof stackSchema>;
export type NodeConfig = z.output<typeof nodeSchema>;
export type Role = NodeConfig["role"];
export type AddonConfig = StackInput["addons"]["cilium"];
export type Patch = Record<string, unknown>;

/** The validated stack: what every component takes. */
export interface ClusterConfig extends Omit<StackInput, "endpoint"> {
  /** Kubernetes API URL, normalised to https://host:port. */
  endpoint: string;
  /** Host part of the endpoint, for certificate SANs. */
  endpointHost: string;
  controlPlanes: NodeConfig[];
  workers: NodeConfig[];
}

export interface ParsedConfig {
  config: ClusterConfig;
  /** Problems that do not stop a deployment but deserve a look (e.g. an even etcd member count). */
  warnings: string[];
}

/** Thrown with every problem in the stack config; its message lists them one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `The stack config has ${problems.length} problem${problems.length === 1 ? "" : "s"}; nothing was created or changed:\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** What a schema's definition holds that leads to the keys of an object inside it. */
interface SchemaDef {
  type: string;
  shape?: Record<string, z.core.$ZodType>;
  innerType?: z.core.$ZodType;
  element?: z.core.$ZodType;
  in?: z.core.$ZodType;
}

function unwrapped(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (;;) {
    const def = current._zod.def as SchemaDef;
    const next = def.innerType ?? (def.type === "pipe" ? def.in : undefined);
    if (next === undefined) return current;
    current = next;
  }
}

/** The keys the object at `path` of the stack schema accepts, for a "did you mean". */
function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] {
  let current = unwrapped(schema);
  for (const seg of path) {
    const def = current._zod.def as SchemaDef;
    const next = typeof seg === "number" ? def.element : typeof seg === "string" ? def.shape?.[seg] : undefined;
    if (next === undefined) return [];
    current = unwrapped(next);
  }
  return Object.keys((current._zod.def as SchemaDef).shape ?? {});
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = PROJECT;
  path.forEach((seg, i) => {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += i === 0 ? `:${String(seg)}` : `.${String(seg)}`;
  });
  return out;
}

/**
 * Pulumi hands every config value to the program as a string; structured values (lists, maps)
 * arrive as JSON text. Keys come as "project:key".
 */
export function configFromPulumi(all: Record<string, string>): Record<string, unknown> {
  return projectKeys(all, parseMaybeJson);
}

/** The entries of a "project:key" map that belong to this project, keyed without the prefix. */
function projectKeys<T>(all: Record<string, T>, value: (v: T) => unknown): Record<string, unknown> {
  const prefix = `${PROJECT}:`;
  return Object.fromEntries(
    Object.entries(all)
      .filter(([fullKey]) => fullKey.startsWith(prefix))
      .map(([fullKey, v]) => [fullKey.slice(prefix.length), value(v)]),
  );
}

/**
 * The project's keys from a stack file (Pulumi.<stack>.yaml), for validating a stack without the
 * engine. Values are already structured there; secure values stay opaque `{ secure }` objects.
 */
export function configFromStackFile(text: string): Record<string, unknown> {
  const doc: unknown = parseYaml(text);
  const config = isRecord(doc) && isRecord(doc.config) ? doc.config : {};
  return projectKeys(config, (v) => v);
}

function parseMaybeJson(value: string): unknown {
  const trimmed = value.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return value;
    }
  }
  if (trimmed === "true" || trimmed === "false") return trimmed === "true";
  return value;
}

/** Validates the raw stack config; throws ConfigError listing every problem at once. */
export function parseConfig(given: Record<string, unknown>): ParsedConfig {
  const problems: string[] = [];
  const warnings: string[] = [];
  const raw = withPatchTexts(given, problems);
  const result = stackSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) {
          const meant = closest(key, keysAt(stackSchema, issue.path));
          problems.push(
            `${keyPath([...issue.path, key])}: unknown key; ${meant === undefined ? "check its spelling against the README's config table" : `did you mean ${meant}?`}`,
          );
        }
      } else {
        problems.push(`${keyPath(issue.path)}: ${issue.message}`);
      }
    }
  }
  // Cross-field rules run on whatever parts are well-formed, so one run reports everything.
  crossChecks(raw, problems, warnings);
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);

  const input = result.data;
  const endpoint = normaliseEndpoint(input.endpoint);
  // crossChecks already refused a malformed endpoint; this only narrows the type.
  if (endpoint === undefined) throw new ConfigError([`${PROJECT}:endpoint: ${JSON.stringify(input.endpoint)} is not a valid endpoint`]);
  return {
    config: {
      ...input,
      endpoint: endpoint.url,
      endpointHost: endpoint.host,
      controlPlanes: input.nodes.filter((n) => n.role === "controlplane"),
      workers: input.nodes.filter((n) => n.role === "worker"),
    },
    warnings,
  };
}

/**
 * A patch may be given as YAML text (`- |` in a stack file), as `talosctl --config-patch` takes it:
 * each such text becomes the mapping it holds, so every later check sees it as any other patch.
 * Text with several documents, or that is not a mapping, is refused with the form to use.
 */
function withPatchTexts(raw: Record<string, unknown>, problems: string[]): Record<string, unknown> {
  const parse = (list: unknown, key: string): unknown => {
    if (!Array.isArray(list)) return list;
    return list.map((patch, i) => {
      if (typeof patch !== "string") return patch;
      const docs = parseAllDocuments(patch);
      const doc = docs[0];
      if (docs.length !== 1 || doc === undefined || doc.errors.length > 0) {
        problems.push(
          `${PROJECT}:${key}[${i}]: ${docs.length > 1 ? `holds ${docs.length} YAML documents; give each its own list entry` : `is not valid YAML${doc?.errors[0] ? ` (${doc.errors[0].message.split("\n")[0]})` : ""}`}`,
        );
        return {}; // refused above; the schema need not say it again
      }
      const value: unknown = doc.toJS();
      if (!isRecord(value)) {
        problems.push(
          `${PROJECT}:${key}[${i}]: must be a machine-config patch: a mapping such as "machine: {sysctls: {...}}", as YAML text or nested YAML`,
        );
        return {};
      }
      return value;
    });
  };
  const out: Record<string, unknown> = { ...raw };
  if (isRecord(raw.patches)) {
    const groups: Record<string, unknown> = { ...raw.patches };
    for (const group of ["all", "controlplane", "worker"]) groups[group] = parse(groups[group], `patches.${group}`);
    out.patches = groups;
  }
  if (Array.isArray(raw.nodes)) {
    out.nodes = raw.nodes.map((node, i) => (isRecord(node) ? { ...node, patches: parse(node.patches, `nodes[${i}].patches`) } : node));
  }
  return out;
}

/** Accepts `host`, `host:port` or `https://host[:port]`; the API server port defaults to 6443. */
export function normaliseEndpoint(text: string): { url: string; host: string } | undefined {
  const m = /^(?:https:\/\/)?([^/:\s]+)(?::(\d{1,5}))?\/?$/.exec(text.trim());
  if (!m || m[1] === undefined) return undefined;
  const host = m[1];
  const port = m[2] === undefined ? 6443 : Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  if (parseIPv4(host) === undefined && (/^[\d.]+$/.test(host) || !isDnsName(host))) return undefined;
  return { url: `https://${host}:${port}`, host };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function crossChecks(raw: Record<string, unknown>, problems: string[], warnings: string[]): void {
  const endpoint = str(raw.endpoint);
  if (endpoint !== undefined && normaliseEndpoint(endpoint) === undefined) {
    problems.push(
      `${PROJECT}:endpoint: ${JSON.stringify(endpoint)} is not a host, host:port or https://host:port (e.g. 10.0.0.10 or https://k8s.example.com:6443)`,
    );
  }

  checkVersions(str(raw.talosVersion) ?? DEFAULT_TALOS_VERSION, str(raw.kubernetesVersion) ?? DEFAULT_KUBERNETES_VERSION, problems);

  if (Array.isArray(raw.extensions)) {
    const minor = talosMinor(str(raw.talosVersion) ?? DEFAULT_TALOS_VERSION);
    raw.extensions.forEach((ext, i) => {
      const key = `${PROJECT}:extensions[${i}]`;
      if (typeof ext !== "string") {
        problems.push(`${key}: must be an extension name such as siderolabs/iscsi-tools`);
        return;
      }
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

  const nodes = Array.isArray(raw.nodes) ? raw.nodes : [];
  if (raw.nodes !== undefined && !Array.isArray(raw.nodes)) return;
  const byName = new Map<string, number>();
  const byAddress = new Map<string, number>();
  const addresses: { index: number; value: number; text: string }[] = [];
  let controlPlanes = 0;
  nodes.forEach((node, i) => {
    if (!isRecord(node)) {
      problems.push(`${PROJECT}:nodes[${i}]: must be an object with name, address and role`);
      return;
    }
    const name = str(node.name);
    if (name !== undefined) {
      const first = byName.get(name);
      if (first !== undefined) {
        problems.push(`${PROJECT}:nodes[${i}].name: ${JSON.stringify(name)} is already used by nodes[${first}]; node names must be unique`);
      } else byName.set(name, i);
    }
    const address = str(node.address);
    const parsed = address === undefined ? undefined : parseIPv4(address);
    if (address !== undefined && parsed !== undefined) {
      const first = byAddress.get(address);
      if (first !== undefined) {
        problems.push(`${PROJECT}:nodes[${i}].address: ${address} is already used by nodes[${first}]; each node needs its own address`);
      } else byAddress.set(address, i);
      addresses.push({ index: i, value: parsed, text: address });
    }
    if (node.role === "controlplane") controlPlanes++;
    if (node.role === "worker" && isRecord(node.labels)) {
      for (const key of Object.keys(node.labels)) {
        const refusal = kubeletLabelRefusal(key);
        if (refusal === undefined) continue;
        problems.push(
          `${PROJECT}:nodes[${i}].labels: ${JSON.stringify(key)} cannot be set on a worker: Talos labels a worker with its kubelet's credentials, and Kubernetes' NodeRestriction refuses this key (${refusal}), and with it every other label of the node; use a key under node.kubernetes.io/ or a domain of your own`,
        );
      }
    }
    if (node.installDisk !== undefined && node.installDiskSelector !== undefined) {
      problems.push(`${PROJECT}:nodes[${i}]: set either installDisk or installDiskSelector, not both`);
    } else if (node.installDisk === undefined && node.installDiskSelector === undefined) {
      problems.push(
        `${PROJECT}:nodes[${i}]: set installDisk (e.g. /dev/nvme0n1) or installDiskSelector (e.g. { type: nvme }); without one Talos installs to /dev/sda, wiping whatever is there`,
      );
    }
  });
  if (Array.isArray(raw.nodes)) {
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

  checkNetwork(raw.network, addresses, endpoint, problems);
  checkVipAddressing(raw, problems);
  checkPatchDocuments(raw, problems);
  checkOwnedKeys(raw, problems);
}

/**
 * `network.vip.dhcp: false` leaves the VIP's link to the control planes' own patches: Talos runs
 * no default DHCP on a link an interfaces entry names, and merges entries by their exact link
 * (the same `interface`, or an equal `deviceSelector`). Each control plane must therefore give
 * that same link static `addresses` (or `dhcp: true`) itself, or it has no address after install.
 */
function checkVipAddressing(raw: Record<string, unknown>, problems: string[]): void {
  const net = isRecord(raw.network) ? raw.network : {};
  const vip = isRecord(net.vip) ? net.vip : undefined;
  if (vip === undefined || vip.dhcp !== false || !Array.isArray(raw.nodes)) return;
  const link =
    vip.interface !== undefined
      ? { interface: vip.interface }
      : isRecord(vip.deviceSelector)
        ? { deviceSelector: vip.deviceSelector }
        : undefined;
  if (link === undefined) return;
  const sameLink = (entry: Record<string, unknown>) =>
    "interface" in link ? entry.interface === link.interface : canonical(entry.deviceSelector) === canonical(link.deviceSelector);
  const addressed = (entry: Record<string, unknown>) =>
    entry.dhcp === true || (Array.isArray(entry.addresses) && entry.addresses.some((a) => typeof a === "string"));
  const stackPatches = isRecord(raw.patches) ? raw.patches : {};
  const shared = [stackPatches.all, stackPatches.controlplane].flatMap((list) => (Array.isArray(list) ? list : []));
  const described = "interface" in link ? `interface ${String(link.interface)}` : `deviceSelector ${canonical(link.deviceSelector)}`;
  raw.nodes.forEach((node, i) => {
    if (!isRecord(node) || node.role !== "controlplane") return;
    const own = Array.isArray(node.patches) ? node.patches : [];
    const entries = [...shared, ...own].flatMap((patch) => interfacesOf(patch));
    if (entries.some((e) => sameLink(e) && addressed(e))) return;
    const name = str(node.name);
    problems.push(
      `${PROJECT}:network.vip.dhcp: false leaves nodes[${i}]${name === undefined ? "" : ` (${name})`} without an address on the VIP's link (${described}): an interfaces entry that names a link turns off Talos' default DHCP on it. Give that link static addresses for the same ${"interface" in link ? "interface" : "deviceSelector"} in patches.controlplane or nodes[${i}].patches (machine.network.interfaces[].addresses), or leave network.vip.dhcp at its default, true`,
    );
  });
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

/** Every machine-config patch in the raw stack config, with the key a user finds it under. */
function patchesWithKeys(raw: Record<string, unknown>): { key: string; patch: Record<string, unknown> }[] {
  const found: { key: string; patch: Record<string, unknown> }[] = [];
  const collect = (list: unknown, key: string) => {
    if (!Array.isArray(list)) return;
    list.forEach((patch, i) => {
      if (isRecord(patch)) found.push({ key: `${key}[${i}]`, patch });
    });
  };
  const stackPatches = isRecord(raw.patches) ? raw.patches : {};
  for (const group of ["all", "controlplane", "worker"]) collect(stackPatches[group], `${PROJECT}:patches.${group}`);
  if (Array.isArray(raw.nodes)) {
    raw.nodes.forEach((node, i) => {
      if (isRecord(node)) collect(node.patches, `${PROJECT}:nodes[${i}].patches`);
    });
  }
  return found;
}

/** Machine-config keys the program sets itself, and the stack key to use instead. */
const OWNED_KEYS: { path: string[]; owner: string; when?: (raw: Record<string, unknown>) => boolean }[] = [
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
    when: ciliumOn,
  },
  { path: ["cluster", "proxy"], owner: "Cilium replaces kube-proxy: set addons.cilium.enabled to false to keep it", when: ciliumOn },
];

function ciliumOn(raw: Record<string, unknown>): boolean {
  const addons = isRecord(raw.addons) ? raw.addons : {};
  return !(isRecord(addons.cilium) && addons.cilium.enabled === false);
}

/** A patch that sets what the program sets itself would fight it (last writer wins, silently). */
function checkOwnedKeys(raw: Record<string, unknown>, problems: string[]): void {
  for (const { key, patch } of patchesWithKeys(raw)) {
    for (const owned of OWNED_KEYS) {
      if (owned.when !== undefined && !owned.when(raw)) continue;
      let at: unknown = patch;
      for (const part of owned.path) at = isRecord(at) ? at[part] : undefined;
      if (at !== undefined) problems.push(`${key}: ${owned.path.join(".")} is set by the program; ${owned.owner}`);
    }
  }
}

/**
 * A patch that is a config document of its own (kind + apiVersion) must be one the talos plugin's
 * config library decodes: it refuses an unknown kind in every config the patch reaches, at apply.
 */
function checkPatchDocuments(raw: Record<string, unknown>, problems: string[]): void {
  const library = PLUGIN_CONFIG_LIBRARY;
  for (const { key, patch } of patchesWithKeys(raw)) {
    const kind = patch.kind;
    if (kind === undefined) continue;
    if (typeof kind !== "string") {
      problems.push(`${key}.kind: must be a config document kind such as VolumeConfig`);
      continue;
    }
    const since = CONFIG_DOCUMENT_KINDS[kind];
    if (since === undefined) {
      problems.push(
        `${key}: unknown config document kind ${JSON.stringify(kind)}; the talos plugin's config library (Talos ${library.version}) knows ${Object.entries(
          CONFIG_DOCUMENT_KINDS,
        )
          .flatMap(([known, from]) => (minorAtLeast(library.minor, from) ? [known] : []))
          .join(", ")}`,
      );
    } else if (!minorAtLeast(library.minor, since)) {
      problems.push(
        `${key}: ${kind} is a Talos ${since} config document, and the talos plugin's config library (Talos ${library.version}, in ${library.provider}) cannot decode it ("${kind}" "v1alpha1": not registered), so every config it reaches would fail; see the README's toolchain table`,
      );
    } else if (patch.apiVersion !== "v1alpha1") {
      problems.push(`${key}.apiVersion: a ${kind} document needs apiVersion: v1alpha1`);
    }
  }
}

function checkVersions(talos: string, kubernetes: string, problems: string[]): void {
  const t = TALOS_VERSION.exec(talos);
  const k = KUBERNETES_VERSION.exec(kubernetes);
  if (!t || !k) return;
  const talosMinor = `${t[1]}.${t[2]}`;
  const support = KUBERNETES_SUPPORT[talosMinor];
  if (support === undefined) {
    problems.push(
      `${PROJECT}:talosVersion: Talos ${talosMinor} is not in the support table (${Object.keys(KUBERNETES_SUPPORT).join(", ")}); add its row to lib/versions.ts after checking its release notes`,
    );
    return;
  }
  const minor = (v: string) => Number(v.split(".")[1]);
  const kMinor = Number(k[2]);
  if (Number(k[1]) !== 1 || kMinor < minor(support.min) || kMinor > minor(support.max)) {
    problems.push(
      `${PROJECT}:kubernetesVersion: Kubernetes ${kubernetes} is not supported by Talos ${talos}; it supports ${support.min} to ${support.max}`,
    );
  }
}

function checkNetwork(
  network: unknown,
  addresses: { index: number; value: number; text: string }[],
  endpoint: string | undefined,
  problems: string[],
): void {
  const net = isRecord(network) ? network : {};
  const named = (key: string, fallback: string[]): { key: string; cidr: NonNullable<ReturnType<typeof parseCidr>> }[] => {
    const list = Array.isArray(net[key]) ? (net[key] as unknown[]) : fallback;
    return list.flatMap((v, i) => {
      const c = typeof v === "string" ? parseCidr(v) : undefined;
      return c ? [{ key: `${PROJECT}:network.${key}[${i}]`, cidr: c }] : [];
    });
  };
  const pods = named("podSubnets", networkDefaults.podSubnets);
  const services = named("serviceSubnets", networkDefaults.serviceSubnets);
  const nodeSubnetText = str(net.nodeSubnet);
  const nodeSubnet = nodeSubnetText === undefined ? undefined : parseCidr(nodeSubnetText);

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
        problems.push(`${PROJECT}:nodes[${a.index}].address: ${a.text} is outside network.nodeSubnet ${nodeSubnetText}`);
      }
    }
  }

  const vip = isRecord(net.vip) ? net.vip : undefined;
  const vipText = vip ? str(vip.address) : undefined;
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
    problems.push(`${PROJECT}:network.vip.address: ${vipText} is also nodes[${clash.index}].address; the VIP must be a free address`);
  }
  const endpointHost = endpoint === undefined ? undefined : normaliseEndpoint(endpoint)?.host;
  if (endpointHost !== undefined && parseIPv4(endpointHost) !== undefined && endpointHost !== vipText) {
    problems.push(
      `${PROJECT}:endpoint: ${endpoint} differs from network.vip.address ${vipText}; with a VIP the endpoint should be the VIP`,
    );
  }
}
