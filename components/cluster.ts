// TalosCluster: machine secrets, one machine configuration per node, one config apply per node, the
// bootstrap of etcd, the credentials (kubeconfig, talosconfig) that come out of it, and per node
// what it really runs (talosnode.NodeState, read back on every refresh).
import * as pulumi from "@pulumi/pulumi";
import * as talos from "@pulumiverse/talos";
import * as talosnode from "@talos-cluster/talosnode";
import type { ClusterConfig } from "../lib/config/schema";
import { type CertificateExpiry, certificateExpiries, expiryWarnings, stackCertificates } from "../lib/expiry";
import { resourceNames } from "../lib/naming";
import { operationTimeouts, planCluster } from "../lib/plan";
import { SECRET_OUTPUTS, TYPES } from "../lib/tokens";
import { talosDowngrade } from "../lib/versions";

export interface TalosClusterArgs {
  /** The validated stack config (lib/config parseConfig). */
  config: ClusterConfig;
  /** Factory installer image every node installs (TalosImage.installerImage). */
  installerImage: string;
  /** The schematic id in that image, which each node should have booted (TalosImage.schematicId). */
  schematicId: pulumi.Input<string>;
  /** Where the rollout writes etcd snapshots (absolute folder) and what their names start with. */
  snapshots: { dir: string; prefix: string };
  /** recover.snapshot as an absolute path: etcd is recovered from it on a wiped cluster. */
  recoverSnapshot?: string;
  /** Resources the config applies wait for: the schematic must exist before a node installs it. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

/** A node as declared, and what it runs as the last up or refresh read it. */
export interface NodeStatus {
  name: string;
  address: string;
  role: string;
  runningTalosVersion: string;
  bootedSchematicId: string;
  /** The Kubernetes version of the config the node applied. */
  kubernetesVersion: string;
}

export class TalosCluster extends pulumi.ComponentResource {
  /** Admin kubeconfig; secret. */
  public readonly kubeconfig: pulumi.Output<string>;
  /** talosconfig for talosctl: every control plane as endpoint, no default nodes (talosctl -n picks); secret. */
  public readonly talosconfig: pulumi.Output<string>;
  public readonly secrets: talos.machine.Secrets;
  /** Each node's first config (talosnode): installed in maintenance mode, or a configured node adopted. */
  public readonly applies: talosnode.ConfigurationApply[];
  public readonly bootstrap: talos.machine.Bootstrap;
  /** With recover.snapshot: etcd recovered from it when every control plane's etcd is empty. */
  public readonly recovery?: talosnode.EtcdRecovery;
  /** Rolls changes of running nodes' config, release and schematic through the cluster. */
  public readonly rollout: talosnode.Rollout;
  /** Per node, in the stack's order: what it runs, as the last up or refresh read it. */
  public readonly nodeStates: talosnode.NodeState[];
  /** `nodeStates` as plain per-node status, for the stack's `nodes` output. */
  public readonly nodes: pulumi.Output<NodeStatus[]>;
  /** What makes the kubeconfig and the talosconfig, and renews them (talosnode.Credentials). */
  public readonly kubeconfigResource: talosnode.Credentials;
  /** When each client certificate and CA ends (subjects and dates only: not secret). */
  public readonly credentials: pulumi.Output<CertificateExpiry[]>;

  constructor(name: string, args: TalosClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super(TYPES.cluster, name, {}, opts);
    const { config } = args;
    const plan = planCluster(name, config, args.installerImage);
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
        additionalSecretOutputs: SECRET_OUTPUTS[TYPES.secrets],
      },
    );
    // The config contract: the release the cluster was created with. A declared release a minor
    // below it is a downgrade every node would take: every node's config waits on this check, so
    // no apply, rollout or node read is registered, and the program stops with the reason alone.
    const downgradeCheck = this.secrets.talosVersion.apply((contract) => {
      const refusal = talosDowngrade(config.talosVersion, contract);
      if (refusal !== undefined) throw new pulumi.RunError(refusal);
      return contract;
    });
    // Secret here as well as in state, so every resource that takes the client key holds it as one.
    const clientConfiguration = pulumi.secret(this.secrets.clientConfiguration);
    // The project's provider mints its own short-lived os:admin certificate from the Talos CA in
    // the machine secrets for each run, so the stored client certificate (one year) expiring never
    // locks it out; the input is no change in a diff, and the minted certificate is never stored.
    const machineSecrets = pulumi.secret(this.secrets.machineSecrets);

    // Each node's full config, rendered by this project's provider with its Talos library (the
    // talos plugin's own library, machinery v1.9.2, cannot move to a current Talos), and judged by
    // Talos' validator in the same call: what the preview validates is byte for byte what is
    // applied, and a patch Talos refuses fails the render naming its stack key. The same config its
    // apply installs and the rollout later applies. An invoke: the config is in state only where
    // the resources below hold it. Secret: it holds the machine secrets, and every resource it
    // reaches must keep it so.
    const nodeConfig = plan.nodes.map((p) =>
      pulumi.secret(
        pulumi
          .all([
            downgradeCheck,
            talosnode.getMachineConfigurationOutput(
              {
                clusterName: config.clusterName,
                clusterEndpoint: config.endpoint,
                machineType: p.role,
                node: p.name,
                machineSecrets: this.secrets.machineSecrets,
                // The config contract stays at the release the cluster was created with (the secrets
                // keep it: ignoreChanges), while the installer image moves on; raising the contract
                // past a release has broken etcd decryption upstream (terraform-provider-talos #399).
                talosVersion: this.secrets.talosVersion,
                kubernetesVersion: config.kubernetesVersion,
                // Every patch in the plan's order, each with its stack key: the ones the validator
                // judged before the run, judged again here against the cluster's real secrets.
                configPatches: this.secrets.talosVersion.apply((contract) => p.patches(contract)),
              },
              { parent: this },
            ).machineConfiguration,
          ])
          .apply(([, rendered]) => rendered),
      ),
    );

    // Each node's first config, installed by the project's own provider: a node in maintenance
    // mode gets it (all of them at once on a first up); a node that already answers over mutual
    // TLS (an existing stack whose nodes the talos plugin's apply installed) is adopted, nothing
    // applied. Later changes of a running node's config are the rollout's, one node at a time: an
    // update here would reach every node at once, and a change Talos applies by rebooting would
    // take etcd's quorum. The resource's own diff says so (only a new address is a change).
    this.applies = plan.nodes.map((p, i) => {
      // Its own wait shows which way the node answered; this first wait is for the TCP port alone,
      // under the node's own row, with the node's name, address and the last error meanwhile.
      const reachable = new talosnode.Reachable(
        resourceNames.reachable(name, p.name),
        { node: p.name, address: p.address, timeout: config.nodeTimeout },
        { parent: this, dependsOn: args.dependsOn ?? [] },
      );
      return new talosnode.ConfigurationApply(
        p.resourceName,
        {
          clientConfiguration,
          machineSecrets,
          machineConfiguration: nodeConfig[i] as pulumi.Output<string>,
          node: p.address,
          applyMode: config.applyMode,
          timeout: config.nodeTimeout,
        },
        {
          parent: this,
          dependsOn: [...(args.dependsOn ?? []), reachable],
          additionalSecretOutputs: SECRET_OUTPUTS[TYPES.configApply],
        },
      );
    });

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

    // Disaster recovery, with recover.snapshot: on a cluster whose control planes were wiped, the
    // recorded bootstrap above never runs again; this restores etcd from the snapshot after the
    // configs apply and before anything waits for Kubernetes. On a cluster whose etcd runs it
    // changes nothing, and removing the key deletes only its record.
    if (args.recoverSnapshot !== undefined) {
      this.recovery = new talosnode.EtcdRecovery(
        resourceNames.recovery(name),
        {
          snapshot: args.recoverSnapshot,
          controlPlanes: config.controlPlanes.map((n) => ({ name: n.name, address: n.address })),
          bootstrapNode: plan.bootstrapNode.name,
          clientConfiguration,
          machineSecrets,
          timeout: config.upgrade.healthTimeout,
        },
        { parent: this, dependsOn: [...this.applies, this.bootstrap], additionalSecretOutputs: SECRET_OUTPUTS[TYPES.etcdRecovery] },
      );
    }
    const recovered = this.recovery === undefined ? [] : [this.recovery];

    // Changes to running nodes (config, release, schematic) roll one node at a time behind health
    // gates. One resource for the whole cluster: per-node resources would be updated in parallel.
    this.rollout = new talosnode.Rollout(
      resourceNames.rollout(name),
      {
        clientConfiguration,
        machineSecrets,
        nodes: plan.nodes.map((p, i) => ({
          name: p.name,
          address: p.address,
          role: p.role,
          talosVersion: config.talosVersion,
          schematicId: args.schematicId,
          installerImage: p.installerImage,
          machineConfiguration: nodeConfig[i] as pulumi.Output<string>,
        })),
        applyMode: config.applyMode,
        maxUnavailableWorkers: config.upgrade.maxUnavailableWorkers,
        healthTimeout: config.upgrade.healthTimeout,
        rebootMode: config.upgrade.rebootMode,
        kubernetesChecks: config.upgrade.kubernetesChecks,
        drainTimeout: config.upgrade.drainTimeout,
        // Left out when empty, so a stack from before the key existed sees no change.
        upgradePath: config.upgrade.path.length > 0 ? config.upgrade.path : undefined,
        snapshotDir: args.snapshots.dir,
        snapshotPrefix: args.snapshots.prefix,
      },
      {
        parent: this,
        dependsOn: [...this.applies, this.bootstrap, ...recovered],
        additionalSecretOutputs: SECRET_OUTPUTS[TYPES.rollout],
      },
    );

    // The talos provider never reads a node back; this does, so a refresh shows a node that was
    // upgraded, rolled back or edited by hand. After the bootstrap: a worker answers over mutual
    // TLS only once a control plane issues its certificate.
    const states = plan.nodes.map((p, i) => {
      const apply = this.applies[i];
      if (apply === undefined) throw new Error(`no config apply for ${p.name}`);
      const state = new talosnode.NodeState(
        resourceNames.nodeState(name, p.name),
        {
          node: p.address,
          clientConfiguration,
          machineSecrets,
          talosVersion: config.talosVersion,
          schematicId: args.schematicId,
          installerImage: p.installerImage,
          kubernetesVersion: config.kubernetesVersion,
          machineConfiguration: nodeConfig[i] as pulumi.Output<string>,
          timeout: config.nodeTimeout,
          // Talos ignores a VIP entry for a link the node lacks without a word; the read says so.
          vip: p.role === "controlplane" ? config.network.vip?.address : undefined,
        },
        {
          parent: this,
          dependsOn: [apply, this.bootstrap, ...recovered, this.rollout],
          additionalSecretOutputs: SECRET_OUTPUTS[TYPES.nodeState],
        },
      );
      const status = pulumi
        .all([state.runningTalosVersion, state.bootedSchematicId, state.appliedKubernetesVersion])
        .apply(([runningTalosVersion, bootedSchematicId, kubernetesVersion]) => ({
          name: p.name,
          address: p.address,
          role: p.role,
          runningTalosVersion,
          bootedSchematicId,
          kubernetesVersion,
        }));
      return { state, status };
    });
    this.nodeStates = states.map((s) => s.state);
    this.nodes = pulumi.all(states.map((s) => s.status));

    // The talosconfig and the admin kubeconfig, minted by the project's provider from the machine
    // secrets' Talos and Kubernetes CAs, touching no node (the talos plugin's Kubeconfig asked the
    // bootstrap node, and its talosconfig reused the stored client certificate). Each client
    // certificate lasts a year; an up renews both once either has less than credentials.renewBefore
    // left, and the Kubernetes provider takes the new kubeconfig in place (addons.ts).
    this.kubeconfigResource = new talosnode.Credentials(
      resourceNames.credentials(name),
      {
        clusterName: config.clusterName,
        clusterEndpoint: config.endpoint,
        endpoints: plan.talosconfig.endpoints,
        machineSecrets,
        renewBefore: config.credentials.renewBefore,
      },
      { parent: this, dependsOn: [this.bootstrap, ...recovered], additionalSecretOutputs: SECRET_OUTPUTS[TYPES.credentials] },
    );
    this.kubeconfig = pulumi.secret(this.kubeconfigResource.kubeconfig);
    this.talosconfig = pulumi.secret(this.kubeconfigResource.talosconfig);

    this.credentials = pulumi.unsecret(
      pulumi
        .all([
          this.kubeconfigResource.talosClientCertificate,
          this.secrets.machineSecrets,
          this.kubeconfigResource.kubernetesClientCertificate,
        ])
        .apply((values) => {
          const [talosClient, secrets, kubeClient] = values.map(unwrapNestedSecrets) as typeof values;
          const certs = stackCertificates({ client: { clientCertificate: talosClient }, secrets, kube: { clientCertificate: kubeClient } });
          if (certs === undefined) return [];
          const now = new Date();
          const expiries = certificateExpiries(certs, now);
          // Only subjects and dates leave the secrets; a run that is about to lock itself out says so.
          for (const warning of expiryWarnings(expiries, now)) pulumi.log.warn(warning, this);
          return expiries;
        }),
    );

    this.registerOutputs({
      kubeconfig: this.kubeconfig,
      talosconfig: this.talosconfig,
      // Read by the policy pack: the prod quorum rule, and the prod rule on certificates near their end.
      credentials: this.credentials,
      controlPlanes: config.controlPlanes.map((n) => n.name),
      bootstrapNode: plan.bootstrapNode.name,
    });
  }
}

/**
 * A value with the secrets inside it unwrapped. The SDK hands an apply a provider's nested secret
 * outputs (the talos plugin's machine secrets) still wrapped as RPC secrets, so every field read
 * from them would be undefined.
 */
function unwrapNestedSecrets(value: unknown): unknown {
  if (pulumi.runtime.isRpcSecret(value)) return unwrapNestedSecrets(pulumi.runtime.unwrapRpcSecret(value));
  if (Array.isArray(value)) return value.map(unwrapNestedSecrets);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapNestedSecrets(v)]));
  }
  return value;
}
