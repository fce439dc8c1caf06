// TalosImage: the Image Factory schematic every node boots and installs from. intel-ucode is always
// in it; the stack can add extensions but not remove that one.
import * as pulumi from "@pulumi/pulumi";
import * as talos from "@pulumiverse/talos";
import { bootMediaUrls, installerImage, resourceNames } from "../lib/naming";
import { schematicFor } from "../lib/schematic";

export interface TalosImageArgs {
  /** Talos release of the installer and boot media, e.g. v1.11.5. */
  talosVersion: string;
  /** Official extensions beyond intel-ucode, in any order. */
  extensions: readonly string[];
  /** Image Factory host the installer and boot media are pulled from. */
  factoryHost: string;
}

/** The factory's id when it is the one computed here; an error naming both otherwise. */
export function verifiedSchematicId(returned: string, expected: { text: string; id: string }): string {
  if (returned !== expected.id) {
    throw new Error(
      `Image Factory returned schematic ${returned}, expected ${expected.id} for ${JSON.stringify(expected.text)}; ` +
        "nodes would install an image nobody built. Check that talos:imageFactoryUrl points at an Image Factory.",
    );
  }
  return returned;
}

export class TalosImage extends pulumi.ComponentResource {
  /** The schematic id, as the factory returned it. */
  public readonly schematicId: pulumi.Output<string>;
  /** `<factory>/installer/<schematic id>:<version>`; known at preview time. */
  public readonly installerImage: string;
  public readonly isoUrl: string;
  public readonly diskImageUrl: string;
  /** The factory's schematic resource: nodes must not install before it exists. */
  public readonly schematic: talos.imagefactory.Schematic;

  constructor(name: string, args: TalosImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("talos-cluster:index:TalosImage", name, {}, opts);
    const expected = schematicFor(args.extensions);
    // The schematic id is the resource's id, and an update cannot change a Pulumi resource's id:
    // a changed schematic must be a new resource, or the stack would keep the old id.
    this.schematic = new talos.imagefactory.Schematic(
      resourceNames.schematic(name),
      { schematic: expected.text },
      { parent: this, replaceOnChanges: ["schematic"] },
    );

    // The id is computed here so previews show every node's exact image; the factory's answer
    // must agree, or nodes would install an image nobody built.
    this.schematicId = this.schematic.id.apply((id) => verifiedSchematicId(id, expected));
    this.installerImage = installerImage(args.factoryHost, expected.id, args.talosVersion);
    const media = bootMediaUrls(args.factoryHost, expected.id, args.talosVersion);
    this.isoUrl = media.iso;
    this.diskImageUrl = media.diskImage;

    this.registerOutputs({
      schematicId: this.schematicId,
      installerImage: this.installerImage,
      isoUrl: this.isoUrl,
      diskImageUrl: this.diskImageUrl,
    });
  }
}
