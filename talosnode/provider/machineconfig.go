package provider

import (
	"context"
	"errors"
	"fmt"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"

	"talos-cluster/talosvalidate/judge"
)

// GetMachineConfiguration renders one node's machine config with this provider's Talos library,
// Talos' validator running in the same call: the config the preview validates is byte for byte
// the one applied. An invoke, so the rendered config lives in state only where a resource holds it.
type GetMachineConfiguration struct{}

// GetMachineConfigurationArgs mirror the talos plugin's machine.getConfiguration, with each patch
// carrying the stack key a problem is blamed on.
type GetMachineConfigurationArgs struct {
	ClusterName       string         `pulumi:"clusterName"`
	ClusterEndpoint   string         `pulumi:"clusterEndpoint"`
	MachineType       string         `pulumi:"machineType"`
	Node              string         `pulumi:"node"`
	MachineSecrets    MachineSecrets `pulumi:"machineSecrets" provider:"secret"`
	TalosVersion      string         `pulumi:"talosVersion"`
	KubernetesVersion string         `pulumi:"kubernetesVersion"`
	ConfigPatches     []KeyedPatch   `pulumi:"configPatches,optional"`
}

// KeyedPatch is one config patch and the stack key it comes from.
type KeyedPatch struct {
	Key   string `pulumi:"key"`
	Patch string `pulumi:"patch"`
}

// MachineSecrets is the talos plugin's machine.Secrets machineSecrets output, unchanged.
type MachineSecrets struct {
	Cluster    SecretsCluster    `pulumi:"cluster"`
	Secrets    SecretsSecrets    `pulumi:"secrets"`
	Trustdinfo SecretsTrustdinfo `pulumi:"trustdinfo"`
	Certs      SecretsCerts      `pulumi:"certs"`
}

// SecretsCluster is the cluster's id and secret.
type SecretsCluster struct {
	ID     string `pulumi:"id"`
	Secret string `pulumi:"secret"`
}

// SecretsSecrets are the Kubernetes tokens and encryption secrets.
type SecretsSecrets struct {
	BootstrapToken            string `pulumi:"bootstrapToken"`
	SecretboxEncryptionSecret string `pulumi:"secretboxEncryptionSecret,optional"`
	AescbcEncryptionSecret    string `pulumi:"aescbcEncryptionSecret,optional"`
}

// SecretsTrustdinfo is trustd's token.
type SecretsTrustdinfo struct {
	Token string `pulumi:"token"`
}

// SecretsCertPair is a certificate and its key, base64 PEM.
type SecretsCertPair struct {
	Cert string `pulumi:"cert"`
	Key  string `pulumi:"key"`
}

// SecretsKey is a key, base64 PEM.
type SecretsKey struct {
	Key string `pulumi:"key"`
}

// SecretsCerts are the cluster's certificate authorities and the service-account key.
type SecretsCerts struct {
	Etcd              SecretsCertPair `pulumi:"etcd"`
	K8s               SecretsCertPair `pulumi:"k8s"`
	K8sAggregator     SecretsCertPair `pulumi:"k8sAggregator"`
	K8sServiceaccount SecretsKey      `pulumi:"k8sServiceaccount"`
	Os                SecretsCertPair `pulumi:"os"`
}

// GetMachineConfigurationResult is the rendered config.
type GetMachineConfigurationResult struct {
	MachineConfiguration string `pulumi:"machineConfiguration" provider:"secret"`
}

var _ infer.Fn[GetMachineConfigurationArgs, GetMachineConfigurationResult] = GetMachineConfiguration{}

// Annotate describes the function.
func (f *GetMachineConfiguration) Annotate(a infer.Annotator) {
	a.Describe(f, "Renders one node's Talos machine config: generated from the cluster's machine secrets for the config contract "+
		"(talosVersion) and Kubernetes release with the talos plugin's generation options, the patches applied one at a time in "+
		"order with Talos' config patcher, and the result judged by Talos' validator (bare metal, strict; warnings pass). "+
		"A config Talos would refuse fails the call, each problem led by the stack key of the patch it is blamed on. "+
		"The config is written without docs or examples, byte for byte what the talos plugin's machine.getConfiguration wrote.")
}

// Annotate describes the inputs.
func (a *GetMachineConfigurationArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.ClusterName, "The cluster's name.")
	an.Describe(&a.ClusterEndpoint, "The Kubernetes API endpoint, https://host:port.")
	an.Describe(&a.MachineType, "controlplane or worker.")
	an.Describe(&a.Node, "The node's name in the stack, for messages.")
	an.Describe(&a.MachineSecrets, "The machineSecrets output of the talos plugin's machine.Secrets, unchanged.")
	an.Describe(&a.TalosVersion, "The config contract: the Talos release the cluster was created with (the secrets' talosVersion).")
	an.Describe(&a.KubernetesVersion, "The Kubernetes release, like 1.34.1.")
	an.Describe(&a.ConfigPatches, "Strategic-merge or JSON 6902 patches in the order they apply, each with the stack key it comes from.")
}

// Invoke renders and validates.
func (GetMachineConfiguration) Invoke(ctx context.Context, req infer.FunctionRequest[GetMachineConfigurationArgs]) (infer.FunctionResponse[GetMachineConfigurationResult], error) {
	in := req.Input
	patches := make([]judge.Patch, len(in.ConfigPatches))
	for i, kp := range in.ConfigPatches {
		patches[i] = judge.Patch{Key: kp.Key, Patch: kp.Patch}
	}
	s, c := in.MachineSecrets, in.MachineSecrets.Certs
	rendered, warnings, err := judge.Render(judge.RenderInput{
		Node:              in.Node,
		Role:              in.MachineType,
		ClusterName:       in.ClusterName,
		Endpoint:          in.ClusterEndpoint,
		Contract:          in.TalosVersion,
		KubernetesVersion: in.KubernetesVersion,
		Patches:           patches,
		Secrets: judge.Secrets{
			ClusterID: s.Cluster.ID, ClusterSecret: s.Cluster.Secret,
			BootstrapToken: s.Secrets.BootstrapToken, SecretboxEncryptionSecret: s.Secrets.SecretboxEncryptionSecret,
			AESCBCEncryptionSecret: s.Secrets.AescbcEncryptionSecret, TrustdToken: s.Trustdinfo.Token,
			EtcdCert: c.Etcd.Cert, EtcdKey: c.Etcd.Key, K8sCert: c.K8s.Cert, K8sKey: c.K8s.Key,
			K8sAggregatorCert: c.K8sAggregator.Cert, K8sAggregatorKey: c.K8sAggregator.Key,
			K8sServiceAccountKey: c.K8sServiceaccount.Key, OSCert: c.Os.Cert, OSKey: c.Os.Key,
		},
	})
	// Warnings were shown by the program's up-front check (talosvalidate) already; here they go
	// to the engine's log only, so each does not show once per node.
	for _, w := range warnings {
		p.GetLogger(ctx).Debugf("%s: %s", in.Node, w)
	}
	var refused *judge.RenderError
	if errors.As(err, &refused) {
		return infer.FunctionResponse[GetMachineConfigurationResult]{}, refused
	}
	if err != nil {
		return infer.FunctionResponse[GetMachineConfigurationResult]{}, fmt.Errorf("rendering the machine config of %s: %w", in.Node, err)
	}
	return infer.FunctionResponse[GetMachineConfigurationResult]{Output: GetMachineConfigurationResult{MachineConfiguration: rendered}}, nil
}
