import { describe, expect, it } from "vitest";
import { schematicExtensions } from "../lib/naming";
import { canonicalSchematic, schematicId } from "../lib/schematic";

describe("schematic id", () => {
  it("matches the factory's id for the empty schematic", () => {
    expect(schematicId({})).toBe("376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba");
  });

  it("matches the factory's id for intel-ucode alone, the minimum every stack gets", () => {
    expect(schematicId({ officialExtensions: schematicExtensions([]) })).toBe(
      "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8",
    );
  });

  it("writes kernel args before extensions, as the factory's struct orders them", () => {
    expect(canonicalSchematic({ extraKernelArgs: ["console=ttyS0"], officialExtensions: ["siderolabs/intel-ucode"] })).toBe(
      "customization:\n    extraKernelArgs:\n        - console=ttyS0\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/intel-ucode\n",
    );
  });

  it("gives up rather than guess when a value would need YAML quoting", () => {
    expect(schematicId({ extraKernelArgs: ["a: b"] })).toBeUndefined();
  });
});
