import { describe, expect, it } from "vitest";
import {
  certificateExpiries,
  EXPIRY_WARN_DAYS,
  expiryWarnings,
  stackCertificates as fromProvider,
  type StackCertificates,
} from "../lib/expiry";
import { certificate } from "./fixtures/certs";

const DAY = 86_400_000;

/** A stack's certificates as Talos issues them: client certificates for a year, CAs for ten. */
function stackCertificates(clientDays = 365): StackCertificates {
  return {
    talosconfigClient: certificate("/O=os:admin/CN=admin", clientDays),
    kubeconfigClient: certificate("/O=system:masters/CN=admin", clientDays),
    talosCa: certificate("/O=talos", 3650),
    kubernetesCa: certificate("/O=kubernetes", 3650),
    etcdCa: certificate("/O=etcd", 3650),
    aggregatorCa: certificate("/CN=front-proxy", 3650),
  };
}

describe("credential expiry", () => {
  it("lists every certificate the stack holds with its subject, end and whole days left", () => {
    // A second after the certificates were made: X.509 times are whole seconds, so "now" taken
    // before openssl ran could fall a second before a notBefore and make a day more.
    const certs = stackCertificates();
    const now = new Date(Date.now() + 1000);
    const list = certificateExpiries(certs, now);
    expect(list.map((c) => [c.name, c.subject])).toEqual([
      ["talosconfig client certificate", "O=os:admin, CN=admin"],
      ["kubeconfig client certificate", "O=system:masters, CN=admin"],
      ["Talos CA", "O=talos"],
      ["Kubernetes CA", "O=kubernetes"],
      ["etcd CA", "O=etcd"],
      ["aggregator CA", "CN=front-proxy"],
    ]);
    expect(list[0]?.daysLeft).toBe(364); // 365 days from a moment ago, rounded down
    expect(list[2]?.daysLeft).toBe(3649);
    expect(Date.parse(list[0]?.notAfter ?? "")).toBeGreaterThan(now.getTime() + 364 * DAY);
  });

  it("warns about nothing a year out, and about both client certificates 30 days before they end", () => {
    const list = certificateExpiries(stackCertificates(), new Date());
    expect(expiryWarnings(list, new Date())).toEqual([]);
    const later = new Date(Date.parse(list[0]?.notAfter ?? "") - (EXPIRY_WARN_DAYS - 0.5) * DAY);
    const warnings = expiryWarnings(list, later);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(
      /^talosconfig client certificate expires on \d{4}-\d\d-\d\d, in 29 days: see docs\/operations.md, Credentials$/,
    );
    expect(warnings[1]).toMatch(/^kubeconfig client certificate expires on/);
  });

  it("says a certificate has expired once it has, first", () => {
    const list = certificateExpiries(stackCertificates(10), new Date());
    const warnings = expiryWarnings(list, new Date(Date.now() + 12 * DAY));
    expect(warnings[0]).toMatch(/^talosconfig client certificate expired on /);
  });

  it("waits for every certificate: a preview before the secrets or the kubeconfig exist lists none", () => {
    const c = stackCertificates();
    const known = {
      client: { clientCertificate: c.talosconfigClient },
      secrets: {
        certs: {
          os: { cert: c.talosCa },
          k8s: { cert: c.kubernetesCa },
          etcd: { cert: c.etcdCa },
          k8sAggregator: { cert: c.aggregatorCa },
        },
      },
      kube: { clientCertificate: c.kubeconfigClient },
    };
    expect(fromProvider(known)).toEqual(c);
    expect(fromProvider({ ...known, kube: undefined })).toBeUndefined();
    expect(fromProvider({ ...known, secrets: {} })).toBeUndefined();
    expect(fromProvider({ ...known, secrets: { certs: { ...known.secrets.certs, etcd: {} } } })).toBeUndefined();
  });

  it("names the credential that is not a certificate", () => {
    expect(() => certificateExpiries({ ...stackCertificates(), etcdCa: Buffer.from("not a cert").toString("base64") }, new Date())).toThrow(
      /^etcd CA: not a PEM certificate/,
    );
  });
});
