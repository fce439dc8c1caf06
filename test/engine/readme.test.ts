// The README's local-backend block, run as it is written on a fresh clone with a home of its own:
// its commands must work in order, with no account and no token.
import { expect, it } from "vitest";
import { freshClone, readmeBlock, runScript } from "./readme";
import { describeEngine } from "./workspace";

describeEngine("the README's local backend block", () => {
  it("logs in to a new folder, makes a stack and lists it, on a fresh clone", () => {
    const result = runScript(readmeBlock("local-backend"), freshClone());
    expect(result.stderr).not.toMatch(/PULUMI_ACCESS_TOKEN|no such file or directory/);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^dev\*?\s/m);
  });
});
