import { describe, expect, it } from "vitest";
import { bootMediaUrls, installerImage, resourceNames, schematicExtensions } from "../lib/naming";
import { schematicId } from "../lib/schematic";

describe("schematic extensions", () => {
  it("always hold intel-ucode, even when the stack adds nothing", () => {
    expect(schematicExtensions([])).toEqual(["siderolabs/intel-ucode"]);
  });

  it("are sorted and de-duplicated so reordering the stack does not change the schematic", () => {
    const a = schematicExtensions(["siderolabs/zfs", "siderolabs/iscsi-tools", "siderolabs/intel-ucode"]);
    const b = schematicExtensions(["siderolabs/iscsi-tools", "siderolabs/zfs", "siderolabs/zfs"]);
    expect(a).toEqual(["siderolabs/intel-ucode", "siderolabs/iscsi-tools", "siderolabs/zfs"]);
    expect(schematicId({ officialExtensions: a })).toBe(schematicId({ officialExtensions: b }));
  });
});

describe("image names", () => {
  it("name the factory installer by schematic id and Talos version", () => {
    expect(installerImage("factory.talos.dev", "376567988ad3", "v1.11.5")).toBe("factory.talos.dev/installer/376567988ad3:v1.11.5");
  });

  it("point boot media at the same factory and schematic", () => {
    expect(bootMediaUrls("factory.example.com", "abc", "v1.11.5")).toEqual({
      iso: "https://factory.example.com/image/abc/v1.11.5/metal-amd64.iso",
      diskImage: "https://factory.example.com/image/abc/v1.11.5/metal-amd64.raw.zst",
    });
  });
});

describe("resource names", () => {
  it("derive from the cluster name so two clusters in one stack never collide", () => {
    expect(resourceNames.configApply("prod", "cp-1")).not.toBe(resourceNames.configApply("dev", "cp-1"));
    expect(resourceNames.secrets("prod")).toBe("prod-secrets");
  });
});
