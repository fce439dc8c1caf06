// Engine tests' entry: the engine helpers (scripts/engine.ts), and describe() that skips or fails
// when the toolchain is missing.
import { describe, it } from "vitest";
import { missingToolchain } from "../../scripts/engine";

export * from "../../scripts/engine";

/**
 * describe() for tests that need the engine. Without the toolchain they are skipped with the
 * reason, except in CI (CI=true), where a missing toolchain is a failure. `controlPlane`: the
 * tests run the simulator with a real etcd and kube-apiserver.
 */
export function describeEngine(name: string, body: () => void, needs: { controlPlane?: boolean } = {}): void {
  const missing = missingToolchain(needs);
  if (missing === undefined) {
    describe(name, body);
  } else if (process.env.CI === "true") {
    describe(name, () => {
      it("has the Pulumi toolchain", () => {
        throw new Error(`CI=true and ${missing}`);
      });
    });
  } else {
    console.warn(`skipping "${name}": ${missing}`);
    describe.skip(name, body);
  }
}
