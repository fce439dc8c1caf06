// When the cluster's credentials expire. Talos issues the talosconfig's and the admin kubeconfig's
// client certificates for one year; after that every refresh, preview and rollout fails. The CAs
// last ten years. Listed in a stack output, warned about in previews and checked by `npm run
// drift`, so nobody finds out from a failed run. Pure.
import { X509Certificate } from "node:crypto";

/** A preview warns, and `npm run drift` fails, once a certificate has this many days left or fewer. */
export const EXPIRY_WARN_DAYS = 30;

const DAY_MS = 24 * 60 * 60 * 1000;

/** One certificate: which credential it is, whom it names, when it ends, days left at the last run. */
export interface CertificateExpiry {
  name: string;
  subject: string;
  notAfter: string;
  daysLeft: number;
}

/** The certificates the stack holds, as the talos provider hands them over (base64 of PEM). */
export interface StackCertificates {
  talosconfigClient: string;
  kubeconfigClient: string;
  talosCa: string;
  kubernetesCa: string;
  etcdCa: string;
  aggregatorCa: string;
}

interface Pem {
  cert?: string;
}
/** What the talos provider's outputs hold: the parts read here, each possibly not known yet. */
export interface ProviderCertificates {
  client?: { clientCertificate?: string };
  secrets?: { certs?: { os?: Pem; k8s?: Pem; etcd?: Pem; k8sAggregator?: Pem } };
  kube?: { clientCertificate?: string };
}

/**
 * The stack's certificates from the talos provider's outputs; undefined while any is not known
 * (a preview before the secrets or the kubeconfig exist gives nested unknowns as undefined).
 */
export function stackCertificates({ client, secrets, kube }: ProviderCertificates): StackCertificates | undefined {
  const certs = {
    talosconfigClient: client?.clientCertificate,
    kubeconfigClient: kube?.clientCertificate,
    talosCa: secrets?.certs?.os?.cert,
    kubernetesCa: secrets?.certs?.k8s?.cert,
    etcdCa: secrets?.certs?.etcd?.cert,
    aggregatorCa: secrets?.certs?.k8sAggregator?.cert,
  };
  return Object.values(certs).every((c) => typeof c === "string" && c !== "") ? (certs as StackCertificates) : undefined;
}

const LABELS: Record<keyof StackCertificates, string> = {
  talosconfigClient: "talosconfig client certificate",
  kubeconfigClient: "kubeconfig client certificate",
  talosCa: "Talos CA",
  kubernetesCa: "Kubernetes CA",
  etcdCa: "etcd CA",
  aggregatorCa: "aggregator CA",
};

/** A certificate given as PEM or as base64 of PEM (the talos provider's form). */
function parse(name: string, text: string): X509Certificate {
  const pem = text.includes("-----BEGIN") ? text : Buffer.from(text, "base64").toString("utf8");
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new Error(`${name}: not a PEM certificate (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Whole days from now to notAfter, rounded down; negative once it has expired. */
export function daysLeft(notAfter: string, now: Date): number {
  return Math.floor((Date.parse(notAfter) - now.getTime()) / DAY_MS);
}

/** Each certificate's subject, end and days left at now, in a fixed order. */
export function certificateExpiries(certs: StackCertificates, now: Date): CertificateExpiry[] {
  return (Object.keys(LABELS) as (keyof StackCertificates)[]).map((key) => {
    const cert = parse(LABELS[key], certs[key]);
    const notAfter = new Date(cert.validTo).toISOString();
    return { name: LABELS[key], subject: cert.subject.replaceAll("\n", ", "), notAfter, daysLeft: daysLeft(notAfter, now) };
  });
}

/**
 * What a person is told about each certificate with `days` or fewer left at now (from its
 * notAfter, not the daysLeft recorded at the last run), soonest first.
 */
export function expiryWarnings(
  expiries: readonly Pick<CertificateExpiry, "name" | "notAfter">[],
  now: Date,
  days = EXPIRY_WARN_DAYS,
): string[] {
  return expiries
    .map((e) => ({ ...e, left: daysLeft(e.notAfter, now) }))
    .filter((e) => e.left <= days)
    .sort((a, b) => a.left - b.left)
    .map((e) =>
      e.left < 0
        ? `${e.name} expired on ${e.notAfter.slice(0, 10)}: see docs/operations.md, Credentials`
        : `${e.name} expires on ${e.notAfter.slice(0, 10)}, in ${e.left} day${e.left === 1 ? "" : "s"}: see docs/operations.md, Credentials`,
    );
}
