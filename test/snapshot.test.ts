// npm run snapshot's reading of a stack's exported state and config (scripts/snapshot-input.ts);
// the snapshot itself: talosnode/backup's Go tests and test/engine/e2e.test.ts.
import { describe, expect, it } from "vitest";
import { controlPlanesOf, machineSecretsFromState, SECRETS_TYPE } from "../scripts/snapshot-input";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const secrets = { cluster: { id: "i", secret: "s" }, certs: { os: { cert: "Y2VydA==", key: "a2V5" } } };
const exported = (resources: unknown[]) => JSON.stringify({ version: 3, deployment: { resources } });
const stackResource = { type: "pulumi:pulumi:Stack", outputs: {} };

describe("npm run snapshot reads", () => {
  it("the machine secrets from the Secrets resource's outputs, a shown secret's plaintext parsed", () => {
    const shown = { [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270", plaintext: JSON.stringify(secrets) };
    expect(machineSecretsFromState("dev", exported([stackResource, { type: SECRETS_TYPE, outputs: { machineSecrets: shown } }]))).toEqual(
      secrets,
    );
    expect(machineSecretsFromState("dev", exported([{ type: SECRETS_TYPE, outputs: { machineSecrets: secrets } }]))).toEqual(secrets);
    // The plugin's sensitive fields are secrets of their own, inside the (secret) whole.
    const nested = {
      ...secrets,
      certs: { os: { cert: "Y2VydA==", key: { [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270", plaintext: '"a2V5"' } } },
    };
    const outer = { [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270", plaintext: JSON.stringify(nested) };
    expect(machineSecretsFromState("dev", exported([{ type: SECRETS_TYPE, outputs: { machineSecrets: outer } }]))).toEqual(secrets);
  });

  it("refuses a stack with nothing deployed, and secrets exported without --show-secrets, saying which", () => {
    expect(() => machineSecretsFromState("dev", exported([stackResource]))).toThrow(
      `dev: its state has no ${SECRETS_TYPE} resource (1 resources): nothing deployed yet; run pulumi up -s dev first`,
    );
    expect(() => machineSecretsFromState("dev", JSON.stringify({ version: 3, deployment: {} }))).toThrow(/nothing deployed yet/);
    const hidden = { [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270", ciphertext: "v1:abc" };
    expect(() => machineSecretsFromState("dev", exported([{ type: SECRETS_TYPE, outputs: { machineSecrets: hidden } }]))).toThrow(
      "dev: the talos:machine/secrets:Secrets resource's machineSecrets has no certs.os cert and key",
    );
  });

  it("the control planes in the stack's order, name and address only", () => {
    const node = (name: string, address: string) => ({ name, address, role: "controlplane" as const, labels: { a: "b" } });
    expect(controlPlanesOf({ controlPlanes: [node("cp-2", "10.0.0.12"), node("cp-1", "10.0.0.11")] } as never)).toEqual([
      { name: "cp-2", address: "10.0.0.12" },
      { name: "cp-1", address: "10.0.0.11" },
    ]);
  });
});
