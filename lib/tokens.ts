// The type tokens of what the program declares and reads, and which outputs of each carry
// credentials. The components declare with them, the policy pack judges by them, the tests look
// resources up by them: one list, so the three cannot drift apart. Pure.

export const TYPES = {
  // The program's own components.
  image: "talos-cluster:index:TalosImage",
  cluster: "talos-cluster:index:TalosCluster",
  addons: "talos-cluster:index:BaseAddons",
  // The talos plugin's resources and invokes.
  schematic: "talos:imagefactory/schematic:Schematic",
  secrets: "talos:machine/secrets:Secrets",
  // What installed a node's first config until talosnode's ConfigurationApply did: an existing
  // stack still holds these, and its next up deletes them (a delete that does nothing to the machine).
  pluginConfigApply: "talos:machine/configurationApply:ConfigurationApply",
  bootstrap: "talos:machine/bootstrap:Bootstrap",
  // What fetched the admin kubeconfig from the bootstrap node until talosnode's Credentials minted
  // it: an existing stack still holds one, and its next up deletes it (a delete that calls no node).
  pluginKubeconfig: "talos:cluster/kubeconfig:Kubeconfig",
  // This project's provider (talosnode/). Machine configs are rendered (and validated) here, not
  // by the talos plugin, whose config library cannot move to a current Talos.
  machineConfig: "talosnode:index:getMachineConfiguration",
  rollout: "talosnode:index:Rollout",
  nodeState: "talosnode:index:NodeState",
  kubernetesReady: "talosnode:index:KubernetesReady",
  reachable: "talosnode:index:Reachable",
  configApply: "talosnode:index:ConfigurationApply",
  etcdRecovery: "talosnode:index:EtcdRecovery",
  credentials: "talosnode:index:Credentials",
  k8sProvider: "pulumi:providers:kubernetes",
} as const;

/**
 * Provider outputs that carry private keys or tokens, per resource type: the program lists them in
 * additionalSecretOutputs so they are encrypted in state and outputs, and the policy pack refuses a
 * resource of the type that does not.
 */
export const SECRET_OUTPUTS = {
  [TYPES.secrets]: ["machineSecrets", "clientConfiguration"],
  [TYPES.configApply]: ["machineConfiguration", "clientConfiguration"],
  [TYPES.pluginConfigApply]: ["machineConfiguration", "clientConfiguration"],
  [TYPES.nodeState]: ["machineConfiguration", "clientConfiguration"],
  [TYPES.rollout]: ["clientConfiguration"],
  [TYPES.etcdRecovery]: ["clientConfiguration"],
  [TYPES.pluginKubeconfig]: ["kubeconfigRaw", "kubernetesClientConfiguration", "clientConfiguration"],
  [TYPES.credentials]: ["talosconfig", "kubeconfig", "machineSecrets"],
};

/**
 * Invoke results that carry private keys or tokens. An invoke takes no additionalSecretOutputs: its
 * provider marks them secret itself (a test checks talosnode's schema), and the program wraps them
 * in pulumi.secret as well.
 */
export const SECRET_RESULTS = {
  [TYPES.machineConfig]: ["machineConfiguration"],
};

/** The outputs of a resource type that must be secret; undefined for a type that carries none. */
export function secretOutputsOf(type: string): readonly string[] | undefined {
  return Object.hasOwn(SECRET_OUTPUTS, type) ? SECRET_OUTPUTS[type as keyof typeof SECRET_OUTPUTS] : undefined;
}
