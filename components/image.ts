// TalosImage: the Image Factory schematic every node boots and installs from. intel-ucode is always
// in it; the stack can add extensions but not remove that one.
import * as pulumi from "@pulumi/pulumi";
import * as talos from "@pulumiverse/talos";
import { type ImageSource, planImage, verifiedSchematicId } from "../lib/image";
import { resourceNames } from "../lib/naming";
import { TYPES } from "../lib/tokens";

/** What the image is made of: release, extensions, factory (lib/image.ts). */
export type TalosImageArgs = ImageSource;

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
    super(TYPES.image, name, {}, opts);
    const plan = planImage(args);
    const expected = plan.schematic;
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
    this.installerImage = plan.installerImage;
    this.isoUrl = plan.isoUrl;
    this.diskImageUrl = plan.diskImageUrl;

    this.registerOutputs({
      schematicId: this.schematicId,
      installerImage: this.installerImage,
      isoUrl: this.isoUrl,
      diskImageUrl: this.diskImageUrl,
    });
  }
}
