// What every node installs and boots, derived once from the stack: the Image Factory schematic
// (intel-ucode always), its id, the installer image and the boot media. TalosImage declares it,
// the cluster plan gives it to each node, the validator judges the configs that carry it. Pure.
import { bootMediaUrls, installerImage } from "./naming";
import { schematicFor } from "./schematic";

export interface ImageSource {
  /** Talos release of the installer and boot media, e.g. v1.11.5. */
  talosVersion: string;
  /** Official extensions beyond intel-ucode, in any order. */
  extensions: readonly string[];
  /** Image Factory host the installer and boot media are pulled from. */
  factoryHost: string;
}

export interface ImagePlan {
  /** The schematic document sent to the factory, and the id the factory derives from it. */
  schematic: { text: string; id: string };
  /** `<factory>/installer/<schematic id>:<version>`. */
  installerImage: string;
  isoUrl: string;
  diskImageUrl: string;
}

export function planImage(source: ImageSource): ImagePlan {
  const schematic = schematicFor(source.extensions);
  const media = bootMediaUrls(source.factoryHost, schematic.id, source.talosVersion);
  return {
    schematic,
    installerImage: installerImage(source.factoryHost, schematic.id, source.talosVersion),
    isoUrl: media.iso,
    diskImageUrl: media.diskImage,
  };
}

/** The stack config's image settings, as planImage takes them. */
export function imageSource(config: { talosVersion: string; extensions: readonly string[]; imageFactoryHost: string }): ImageSource {
  return { talosVersion: config.talosVersion, extensions: config.extensions, factoryHost: config.imageFactoryHost };
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
