// What `npm run snapshot` hands its command (talosnode-snapshot), read from the stack's state and
// config. Pure, so the reading is tested without the engine (test/snapshot.test.ts).
import type { ClusterConfig } from "../lib/config/schema";

/** The type of the talos plugin's resource that holds the machine secrets. */
export const SECRETS_TYPE = "talos:machine/secrets:Secrets";

/** How `pulumi stack export --show-secrets` marks a secret: `plaintext` is the value as JSON. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const isRecord = (v: unknown): v is Record<string, Json> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A value of the exported state with its secrets shown, at any depth (the talos plugin marks its
 * sensitive fields, e.g. certs.os.key, secret on their own): each secret's plaintext, parsed; a
 * secret without its plaintext (exported without --show-secrets) is left out.
 */
function revealed(value: Json | undefined): Json | undefined {
  if (Array.isArray(value)) return value.map((v) => revealed(v) ?? null);
  if (!isRecord(value)) return value;
  if (SECRET_SIG in value) return typeof value.plaintext === "string" ? revealed(JSON.parse(value.plaintext) as Json) : undefined;
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(value)) {
    const shown = revealed(v);
    if (shown !== undefined) out[k] = shown;
  }
  return out;
}

/**
 * The machine secrets from `pulumi stack export --show-secrets` output: the outputs of the stack's
 * talos:machine/secrets:Secrets resource. Throws naming what is missing: no resource (no `up` yet),
 * or a secret exported without its plaintext (no --show-secrets).
 */
export function machineSecretsFromState(stack: string, exported: string): Record<string, Json> {
  const doc = JSON.parse(exported) as { deployment?: { resources?: { type?: string; outputs?: Record<string, Json> }[] } };
  const resources = doc.deployment?.resources ?? [];
  const holders = resources.filter((r) => r.type === SECRETS_TYPE);
  if (holders.length === 0) {
    throw new Error(
      `${stack}: its state has no ${SECRETS_TYPE} resource (${resources.length} resources): nothing deployed yet; run pulumi up -s ${stack} first`,
    );
  }
  if (holders.length > 1) throw new Error(`${stack}: its state has ${holders.length} ${SECRETS_TYPE} resources; expected one cluster`);
  const secrets = revealed(holders[0]?.outputs?.machineSecrets);
  const os = isRecord(secrets) && isRecord(secrets.certs) ? secrets.certs.os : undefined;
  if (!isRecord(secrets) || !isRecord(os) || typeof os.cert !== "string" || typeof os.key !== "string") {
    throw new Error(
      `${stack}: the ${SECRETS_TYPE} resource's machineSecrets has no certs.os cert and key (exported without --show-secrets, or not created yet)`,
    );
  }
  return secrets;
}

/** The control planes, in the stack's order, as the command takes them. */
export function controlPlanesOf(config: Pick<ClusterConfig, "controlPlanes">): { name: string; address: string }[] {
  return config.controlPlanes.map((n) => ({ name: n.name, address: n.address }));
}
