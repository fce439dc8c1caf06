import { describe, expect, it } from "vitest";
import { extensionReleases, KUBERNETES_SUPPORT, OFFICIAL_EXTENSIONS, REQUIRED_EXTENSION } from "../components/versions";

const publishedIn = (minor: string) => Object.keys(OFFICIAL_EXTENSIONS).filter((name) => extensionReleases(name).includes(minor));

describe("extension catalogue", () => {
  it("holds as many extensions per Talos minor as siderolabs/extensions builds for its latest patch", () => {
    // Counted from the Makefile targets of v1.7.7, v1.8.4, v1.9.6, v1.10.9, v1.11.6 and v1.12.11.
    const counts = Object.fromEntries(Object.keys(KUBERNETES_SUPPORT).map((m) => [m, publishedIn(m).length]));
    expect(counts).toEqual({ "1.7": 39, "1.8": 46, "1.9": 51, "1.10": 62, "1.11": 67, "1.12": 78 });
  });

  it("has the required microcode extension, and its AMD sibling, in every supported release", () => {
    const minors = Object.keys(KUBERNETES_SUPPORT);
    expect(extensionReleases(REQUIRED_EXTENSION)).toEqual(minors);
    expect(extensionReleases("siderolabs/amd-ucode")).toEqual(minors);
  });

  it("follows renames: i915-ucode up to 1.8, i915 from 1.9", () => {
    expect(extensionReleases("siderolabs/i915-ucode")).toEqual(["1.7", "1.8"]);
    expect(extensionReleases("siderolabs/i915")).toEqual(["1.9", "1.10", "1.11", "1.12"]);
    expect(extensionReleases("siderolabs/no-such-thing")).toEqual([]);
  });
});
