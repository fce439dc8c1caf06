// TalosCluster: machine secrets, one machine configuration per role, one config apply per node, the
// bootstrap of etcd, and the credentials (kubeconfig, talosconfig) that come out of it.
import * as pulumi from "@pulumi/pulumi";
import * as talos from "@pulumiverse/talos";
import { nodeConfigPatches, operationTimeouts, planCluster } from "./cluster-plan";
import type { ClusterConfig, Role } from "./config";
import { resourceNames } from "./naming";

export interface TalosClusterArgs {
  /** The validated stack config (components/config.ts parseConfig). */
  config: ClusterConfig;
  /** Factory installer image every node installs (TalosImage.installerImage). */
  installerImage: string;
  /** Resources the config applies wait for: the schematic must exist before a node installs it. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

/** Provider outputs that carry private keys or tokens; they must be encrypted in state and outputs. */
export const SECRET_OUTPUTS = {
  secrets: ["machineSecrets", "clientConfiguration"],
  kubeconfig: ["kubeconfigRaw", "kubernetesClientConfiguration", "clientConfiguration"],
};

export class TalosCluster extends pulumi.ComponentResource {
  /** Admin kubeconfig; secret. */
  public readonly kubeconfig: pulumi.Output<string>;
  /** talosconfig for talosctl: every control plane as endpoint, no default nodes (talosctl -n picks); secret. */
  public readonly talosconfig: pulumi.Output<string>;
  public readonly secrets: talos.machine.Secrets;
  public readonly applies: talos.machine.ConfigurationApply[];
  public readonly bootstrap: talos.machine.Bootstrap;
  public readonly kubeconfigResource: talos.cluster.Kubeconfig;

  constructor(name: string, args: TalosClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("talos-cluster:index:TalosCluster", name, {}, opts);
    const { config } = args;
    const plan = planCluster(name, config);
    const timeouts = operationTimeouts(config);

    // Losing these loses the cluster's PKI: protect them, keep them on destroy, and never let a
    // later Talos version in the stack config touch them (a downgrade would even replace them).
    this.secrets = new talos.machine.Secrets(
      resourceNames.secrets(name),
      { talosVersion: config.talosVersion },
      {
        parent: this,
        protect: true,
        retainOnDelete: true,
        ignoreChanges: ["talosVersion"],
        additionalSecretOutputs: SECRET_OUTPUTS.secrets,
      },
    );
    // Secret here as well as in state, so every resource that takes the client key holds it as one.
    const clientConfiguration = pulumi.secret(this.secrets.clientConfiguration);

    const machineConfig = (role: Role) =>
      talos.machine.getConfigurationOutput(
        {
          clusterName: config.clusterName,
          clusterEndpoint: config.endpoint,
          machineType: role,
          machineSecrets: this.secrets.machineSecrets,
          // The config contract stays at the release the cluster was created with (the secrets
          // keep it: ignoreChanges), while the installer image moves on; raising the contract
          // past a release has broken etcd decryption upstream (terraform-provider-talos #399).
          talosVersion: this.secrets.talosVersion,
          kubernetesVersion: config.kubernetesVersion,
          configPatches: plan.roleConfigPatches[role],
          // Examples and docs bloat every apply's diff and state with comments.
          docs: false,
          examples: false,
        },
        { parent: this },
      ).machineConfiguration;
    const roleConfig: Record<Role, pulumi.Output<string>> = {
      controlplane: machineConfig("controlplane"),
      worker: machineConfig("worker"),
    };

    this.applies = plan.nodes.map(
      (p) =>
        new talos.machine.ConfigurationApply(
          p.resourceName,
          {
            clientConfiguration,
            machineConfigurationInput: roleConfig[p.role],
            node: p.address,
            configPatches: this.secrets.talosVersion.apply((contract) => nodeConfigPatches(p.node, args.installerImage, contract)),
            applyMode: config.applyMode,
            timeouts: timeouts.apply,
          },
          { parent: this, dependsOn: args.dependsOn ?? [] },
        ),
    );

    const bootstrapApply = this.applies[plan.nodes.indexOf(plan.bootstrapNode)];
    // Bootstrap once, on the first control plane, after it holds its config: a second bootstrap
    // on another node would start a second etcd cluster.
    this.bootstrap = new talos.machine.Bootstrap(
      resourceNames.bootstrap(name),
      { clientConfiguration, node: plan.bootstrapNode.address, timeouts: timeouts.bootstrap },
      {
        parent: this,
        dependsOn: bootstrapApply === undefined ? [] : [bootstrapApply],
        // A one-time event: when the stack's first control plane changes (reordered, replaced),
        // the recorded bootstrap stays as it was rather than showing up as a change in previews.
        ignoreChanges: ["node"],
      },
    );

    this.kubeconfigResource = new talos.cluster.Kubeconfig(
      resourceNames.kubeconfig(name),
      { clientConfiguration, node: plan.bootstrapNode.address, timeouts: timeouts.kubeconfig },
      { parent: this, dependsOn: [this.bootstrap], additionalSecretOutputs: SECRET_OUTPUTS.kubeconfig },
    );
    this.kubeconfig = pulumi.secret(this.kubeconfigResource.kubeconfigRaw);

    this.talosconfig = pulumi.secret(
      talos.client.getConfigurationOutput(
        {
          clusterName: config.clusterName,
          clientConfiguration,
          endpoints: plan.talosconfig.endpoints,
        },
        { parent: this },
      ).talosConfig,
    );

    this.registerOutputs({
      kubeconfig: this.kubeconfig,
      talosconfig: this.talosconfig,
      // Read by the policy pack's prod quorum rule.
      controlPlanes: config.controlPlanes.map((n) => n.name),
      bootstrapNode: plan.bootstrapNode.name,
    });
  }
}
