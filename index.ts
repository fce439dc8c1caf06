// Entry point: read and validate the stack config before anything is declared, then wire the
// components and export what operators need. Credentials are exported as secrets only.
import * as pulumi from "@pulumi/pulumi";
import { deployCluster } from "./components/program";
import { ConfigError } from "./lib/config/parse";
import { configFromPulumi } from "./lib/config/source";
import { checkStack } from "./lib/validate";

/** Runs `step`; a stack config problem stops the program with its message alone. */
function refusing<T>(step: () => T): T {
  try {
    return step();
  } catch (err) {
    // A RunError prints its message alone: every problem, without a stack trace in the way.
    if (err instanceof ConfigError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

// Talos judges every node's config (patches included) too, before anything is declared.
const { config, warnings } = refusing(() => checkStack(configFromPulumi(pulumi.runtime.allConfig())));
for (const warning of warnings) pulumi.log.warn(warning);

// The program refuses what needs its surroundings (e.g. a snapshot folder inside the checkout in CI)
// before it declares the first resource.
const out = refusing(() => deployCluster(config));

export const schematicId = out.schematicId;
export const talosVersion = out.talosVersion;
export const kubernetesVersion = out.kubernetesVersion;
export const installerImage = out.installerImage;
export const isoUrl = out.isoUrl;
export const diskImageUrl = out.diskImageUrl;
export const nodes = out.nodes;
export const kubeconfig = out.kubeconfig;
export const talosconfig = out.talosconfig;
export const machineSecrets = out.machineSecrets;
export const addons = out.addons;
export const credentials = out.credentials;
