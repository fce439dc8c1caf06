// Where a stack's credentials go on disk, and how: a pure helper of `npm run credentials`.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const CREDENTIAL_FILES = ["talosconfig", "kubeconfig"] as const;

/** The git-ignored folder of a stack's credentials, relative to the project. */
export function credentialsDir(stack: string): string {
  return join(".credentials", stack);
}

/** Writes the credential outputs of a stack into dir (0700), each file 0600; returns the paths. */
export function writeCredentials(dir: string, outputs: Record<string, unknown>): string[] {
  const missing = CREDENTIAL_FILES.filter((f) => typeof outputs[f] !== "string" || outputs[f] === "");
  if (missing.length > 0) {
    throw new Error(
      `the stack has no ${missing.join(" or ")} output yet: run \`npm run pulumi -- up -s <stack>\` first (they exist once the cluster is bootstrapped)`,
    );
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return CREDENTIAL_FILES.map((file) => {
    const path = join(dir, file);
    writeFileSync(path, String(outputs[file]), { mode: 0o600 });
    chmodSync(path, 0o600); // an existing file keeps its mode through writeFileSync
    return path;
  });
}
