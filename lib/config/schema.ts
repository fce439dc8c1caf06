// The stack config's shape: one zod schema with its defaults, the types every component takes,
// and what the schema knows of its own keys (for "did you mean"). Pure.
import { z } from "zod";
import { isDnsName, isHostnameLabel, parseCidr, parseIPv4 } from "../net";
import { ADDON_DEFAULTS, DEFAULT_IMAGE_FACTORY_HOST, DEFAULT_KUBERNETES_VERSION, DEFAULT_TALOS_VERSION } from "../versions";

export const TALOS_VERSION = /^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$/;
export const KUBERNETES_VERSION = /^v?(\d+)\.(\d+)\.(\d+)$/;
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

export const nodeSchema = z.strictObject(
  {
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
  },
  { error: "must be an object with name, address and role" },
);

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

/** How long the talosconfig's and kubeconfig's client certificates are valid (Talos' one year). */
export const CREDENTIALS_LIFETIME_HOURS = 365 * 24;

/** A duration as DURATION matches it (90s, 10m, 1h30m), in seconds. */
export function durationSeconds(d: string): number {
  const m = DURATION.exec(d);
  const n = (s: string | undefined) => (s === undefined ? 0 : Number.parseInt(s, 10));
  return m === null ? Number.NaN : n(m[1]) * 3600 + n(m[2]) * 60 + n(m[3]);
}

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

const vipSchema = z.strictObject({
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
});

export const networkDefaults = { podSubnets: ["10.244.0.0/16"], serviceSubnets: ["10.96.0.0/12"] };

export const stackSchema = z.strictObject({
  clusterName: z
    .string({ error: "is required: a name for the cluster, e.g. prod-eu1" })
    .refine(isHostnameLabel, { error: "must be lower-case letters, digits and '-', at most 63 characters" }),
  endpoint: z
    .string({
      error: "is required: the Kubernetes API address (a VIP, load balancer or DNS name), e.g. 10.0.0.10 or https://k8s.example.com:6443",
    })
    .refine((e) => normaliseEndpoint(e) !== undefined, {
      error: (issue) =>
        `${JSON.stringify(issue.input)} is not a host, host:port or https://host:port (e.g. 10.0.0.10 or https://k8s.example.com:6443)`,
    }),
  talosVersion: z.string().regex(TALOS_VERSION, { error: "must be a Talos release such as v1.14.1" }).default(DEFAULT_TALOS_VERSION),
  kubernetesVersion: z
    .string()
    .regex(KUBERNETES_VERSION, { error: "must be a Kubernetes release such as 1.37.0" })
    .default(DEFAULT_KUBERNETES_VERSION),
  imageFactoryHost: z
    .string()
    .refine((h) => isDnsName(h.replace(/:\d+$/, "")) || parseIPv4(h.replace(/:\d+$/, "")) !== undefined, {
      error: "must be a host name (optionally with :port) of an Image Factory, e.g. factory.talos.dev",
    })
    .default(DEFAULT_IMAGE_FACTORY_HOST),
  extensions: z.array(z.string({ error: "must be an extension name such as siderolabs/iscsi-tools" })).default([]),
  applyMode: z
    .enum(["auto", "no_reboot", "reboot", "staged"], {
      error:
        'must be "auto" (reboot only when a change needs it), "no_reboot" (never reboot: before Talos 1.14 such a change fails, from 1.14 it waits for the next reboot), "reboot" or "staged"',
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
      // Releases between the running one and talosVersion, oldest first: the way across minors.
      path: z
        .array(z.string().regex(TALOS_VERSION, { error: "must be a Talos release such as v1.13.9" }), {
          error: "must be a list of Talos releases, oldest first, e.g. [v1.13.9]",
        })
        .default([]),
    })
    .default({ maxUnavailableWorkers: 1, healthTimeout: "15m", rebootMode: "default", kubernetesChecks: true, path: [] }),
  // Disaster recovery: etcd is restored from this snapshot when every control plane's etcd is
  // empty and waits for the bootstrap (their EPHEMERAL wiped); otherwise it changes nothing.
  recover: z
    .strictObject({
      snapshot: z
        .string({ error: "is required: the path of an etcd snapshot, e.g. one the rollout wrote to upgrade.snapshotDir" })
        .min(1, { error: "must be the path of an etcd snapshot, e.g. one the rollout wrote to upgrade.snapshotDir" }),
    })
    .optional(),
  // The talosconfig's and kubeconfig's client certificates live a year; an up renews both once
  // either has less than this left. Shorter than the year, or every up would renew them.
  credentials: z
    .strictObject({
      renewBefore: anyDuration("720h")
        .refine((d) => !(durationSeconds(d) >= CREDENTIALS_LIFETIME_HOURS * 3600), {
          error: `must be shorter than the certificates' lifetime (${CREDENTIALS_LIFETIME_HOURS}h), e.g. 720h (30 days): the talosconfig and kubeconfig are renewed by an up once they have this long left`,
        })
        .default("720h"),
    })
    .default({ renewBefore: "720h" }),
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

export type StackInput = z.output<typeof stackSchema>;
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
export function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] {
  let current = unwrapped(schema);
  for (const seg of path) {
    const def = current._zod.def as SchemaDef;
    const next = typeof seg === "number" ? def.element : typeof seg === "string" ? def.shape?.[seg] : undefined;
    if (next === undefined) return [];
    current = unwrapped(next);
  }
  return Object.keys((current._zod.def as SchemaDef).shape ?? {});
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
