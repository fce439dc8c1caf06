import { describe, expect, it } from "vitest";
import { extensionReleases, KUBERNETES_SUPPORT, OFFICIAL_EXTENSIONS, REQUIRED_EXTENSION, talosDowngrade } from "../lib/versions";

const publishedIn = (minor: string) => Object.keys(OFFICIAL_EXTENSIONS).filter((name) => extensionReleases(name).includes(minor));

describe("extension catalogue", () => {
  it("holds as many extensions per Talos minor as siderolabs/extensions builds for its latest patch", () => {
    // Counted from the Makefile targets of v1.7.7, v1.8.4, v1.9.6, v1.10.9, v1.11.6, v1.12.11, v1.13.9 and v1.14.0-rc.1.
    const counts = Object.fromEntries(Object.keys(KUBERNETES_SUPPORT).map((m) => [m, publishedIn(m).length]));
    expect(counts).toEqual({ "1.7": 39, "1.8": 46, "1.9": 51, "1.10": 62, "1.11": 67, "1.12": 78, "1.13": 83, "1.14": 86 });
  });

  it("has the required microcode extension, and its AMD sibling, in every supported release", () => {
    const minors = Object.keys(KUBERNETES_SUPPORT);
    expect(extensionReleases(REQUIRED_EXTENSION)).toEqual(minors);
    expect(extensionReleases("siderolabs/amd-ucode")).toEqual(minors);
  });

  it("follows renames: i915-ucode up to 1.8, i915 from 1.9", () => {
    expect(extensionReleases("siderolabs/i915-ucode")).toEqual(["1.7", "1.8"]);
    expect(extensionReleases("siderolabs/i915")).toEqual(["1.9", "1.10", "1.11", "1.12", "1.13", "1.14"]);
    expect(extensionReleases("siderolabs/no-such-thing")).toEqual([]);
  });
});

describe("Talos downgrades", () => {
  it("refuses a release a minor below the cluster's config contract, naming both and the fix", () => {
    expect(talosDowngrade("v1.10.7", "v1.11.5")).toBe(
      "talos-cluster:talosVersion: v1.10.7 is a downgrade from Talos 1.11, the release the cluster was created with (its machine secrets' config contract, v1.11.5): Talos does not go back a minor release, and its etcd may not start on the data of a newer one (1.11's etcd 3.6 data does not start on 1.10's etcd 3.5); declare a 1.11 release or later",
    );
    expect(talosDowngrade("v1.9.6", "v1.12.0")).toMatch(/^talos-cluster:talosVersion: v1\.9\.6 is a downgrade from Talos 1\.12/);
  });

  it("accepts the same minor (patches may go back), and any later one", () => {
    expect(talosDowngrade("v1.11.3", "v1.11.5")).toBeUndefined();
    expect(talosDowngrade("v1.11.5", "v1.11.5")).toBeUndefined();
    expect(talosDowngrade("v1.12.0", "v1.10.7")).toBeUndefined();
  });
});
