// Entry point: read and validate the stack config before anything is declared, then wire the
// components and export what operators need. Credentials are exported as secrets only.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, configFromPulumi } from "./components/config";
import { deployCluster } from "./components/program";
import { checkStack } from "./components/talos-validator";

function loadConfig() {
  try {
    // Talos judges every node's config (patches included) too, before anything is declared.
    return checkStack(configFromPulumi(pulumi.runtime.allConfig()));
  } catch (err) {
    // A RunError prints its message alone: every problem, without a stack trace in the way.
    if (err instanceof ConfigError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

const { config, warnings } = loadConfig();
for (const warning of warnings) pulumi.log.warn(warning);

const out = deployCluster(config);

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
