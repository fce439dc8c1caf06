package provider

import (
	"context"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	talosx509 "github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/role"
	yaml "go.yaml.in/yaml/v4"

	"talos-cluster/talosnode/node"
)

// Credentials mints the stack's talosconfig and admin kubeconfig from the machine secrets' CAs,
// touching no node: the client certificates Talos would issue (an os:admin one from the Talos CA,
// as `talosctl gen config` does; a system:masters "admin" one from the Kubernetes CA, as the
// Kubeconfig RPC does, talos v1.11.5 pkg/kubeconfig/generate.go), each for a year. Its diff asks
// for new ones once either has less than renewBefore left, so a regular `up` renews them.
type Credentials struct{}

// DefaultRenewBefore is how long before their end the credentials are renewed by default.
const DefaultRenewBefore = "720h"

// CredentialsLifetime is how long a minted certificate is valid: Talos' default for both
// (machinery constants TalosAPIDefaultCertificateValidityDuration, KubernetesAdminCertDefaultLifetime).
const CredentialsLifetime = constants.TalosAPIDefaultCertificateValidityDuration

// clock is the provider's time: a test sets it to see a renewal come due.
var clock = time.Now

// CredentialsArgs are the cluster the credentials are for.
type CredentialsArgs struct {
	ClusterName     string         `pulumi:"clusterName"`
	ClusterEndpoint string         `pulumi:"clusterEndpoint"`
	Endpoints       []string       `pulumi:"endpoints"`
	MachineSecrets  MachineSecrets `pulumi:"machineSecrets" provider:"secret"`
	RenewBefore     string         `pulumi:"renewBefore,optional"`
}

// CredentialsState is the declaration and what was minted.
type CredentialsState struct {
	CredentialsArgs
	Talosconfig string `pulumi:"talosconfig" provider:"secret"`
	Kubeconfig  string `pulumi:"kubeconfig" provider:"secret"`
	// The client certificates (base64 of PEM; public), and when they end (RFC 3339).
	TalosClientCertificate      string `pulumi:"talosClientCertificate"`
	KubernetesClientCertificate string `pulumi:"kubernetesClientCertificate"`
	TalosconfigNotAfter         string `pulumi:"talosconfigNotAfter"`
	KubeconfigNotAfter          string `pulumi:"kubeconfigNotAfter"`
}

var (
	_ infer.CustomResource[CredentialsArgs, CredentialsState]       = Credentials{}
	_ infer.CustomCheck[CredentialsArgs]                            = Credentials{}
	_ infer.CustomUpdate[CredentialsArgs, CredentialsState]         = Credentials{}
	_ infer.CustomRead[CredentialsArgs, CredentialsState]           = Credentials{}
	_ infer.CustomDelete[CredentialsState]                          = Credentials{}
	_ infer.ExplicitDependencies[CredentialsArgs, CredentialsState] = Credentials{}
)

const credentialsType tokens.Type = "talosnode:index:Credentials"

// Annotate describes the resource.
func (r *Credentials) Annotate(a infer.Annotator) {
	a.Describe(r, "The cluster's talosconfig and admin kubeconfig, minted from the machine secrets' Talos and Kubernetes CAs without "+
		"calling any node: client certificates valid for a year, as Talos issues them. An update, which an up makes once either "+
		"has less than renewBefore left or an input changed, mints both anew. Reads and deletes touch nothing.")
}

// Annotate describes the inputs and outputs.
func (a *CredentialsArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.ClusterName, "The cluster's name: the talosconfig's context, the kubeconfig's cluster (its user and context admin@<name>).")
	an.Describe(&a.ClusterEndpoint, "The Kubernetes API server URL, the kubeconfig's server (the machine configs' cluster endpoint).")
	an.Describe(&a.Endpoints, "The talosconfig's endpoints: the control planes' addresses.")
	an.Describe(&a.MachineSecrets, "The talos plugin's machine.Secrets machineSecrets, unchanged: its Talos CA (certs.os) and Kubernetes CA (certs.k8s) sign the certificates.")
	an.Describe(&a.RenewBefore, "Renew both once either has less than this left (a Go duration). Default 720h (30 days).")
	an.SetDefault(&a.RenewBefore, DefaultRenewBefore)
}

// Annotate describes the outputs.
func (s *CredentialsState) Annotate(an infer.Annotator) {
	an.Describe(&s.Talosconfig, "A talosconfig for talosctl: an os:admin client certificate, the endpoints, no default nodes.")
	an.Describe(&s.Kubeconfig, "An admin kubeconfig (O=system:masters, CN=admin), context admin@<cluster>.")
	an.Describe(&s.TalosClientCertificate, "The talosconfig's client certificate, base64 of PEM.")
	an.Describe(&s.KubernetesClientCertificate, "The kubeconfig's client certificate, base64 of PEM.")
	an.Describe(&s.TalosconfigNotAfter, "When the talosconfig's client certificate ends (RFC 3339).")
	an.Describe(&s.KubeconfigNotAfter, "When the kubeconfig's client certificate ends (RFC 3339).")
}

// WireDependencies keeps what holds a private key secret wherever it goes.
func (Credentials) WireDependencies(f infer.FieldSelector, _ *CredentialsArgs, state *CredentialsState) {
	f.OutputField(&state.Talosconfig).AlwaysSecret()
	f.OutputField(&state.Kubeconfig).AlwaysSecret()
}

// Check validates the declaration: every failure names its input.
func (Credentials) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[CredentialsArgs], error) {
	args, failures, err := infer.DefaultCheck[CredentialsArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[CredentialsArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)
	known := func(key string) bool { v, ok := req.NewInputs.GetOk(key); return ok && !v.HasComputed() }
	if known("clusterName") && args.ClusterName == "" {
		fail("clusterName", "the cluster's name is empty")
	}
	if known("clusterEndpoint") && args.ClusterEndpoint == "" {
		fail("clusterEndpoint", "the Kubernetes API server URL is empty")
	}
	if known("endpoints") && len(args.Endpoints) == 0 {
		fail("endpoints", "no endpoint: give the control planes' addresses")
	}
	checkDuration(req.NewInputs, "renewBefore", args.RenewBefore, "720h", fail)
	if known("renewBefore") {
		if d, err := time.ParseDuration(args.RenewBefore); err == nil && d >= CredentialsLifetime {
			fail("renewBefore", fmt.Sprintf("%q is not shorter than the certificates' lifetime (%s): every up would renew them", args.RenewBefore, CredentialsLifetime))
		}
	}
	if known("machineSecrets") {
		if _, err := mintCredentials(args, clock()); err != nil {
			fail("machineSecrets", err.Error())
		}
	}
	return infer.CheckResponse[CredentialsArgs]{Inputs: args, Failures: failures}, nil
}

// Create mints the credentials.
func (Credentials) Create(_ context.Context, req infer.CreateRequest[CredentialsArgs]) (infer.CreateResponse[CredentialsState], error) {
	if req.DryRun {
		return infer.CreateResponse[CredentialsState]{Output: CredentialsState{CredentialsArgs: req.Inputs}}, nil
	}
	state, err := mintCredentials(req.Inputs, clock())
	if err != nil {
		return infer.CreateResponse[CredentialsState]{}, err
	}
	return infer.CreateResponse[CredentialsState]{ID: req.Inputs.ClusterName, Output: state}, nil
}

// Update mints them anew: an input changed, or the renewal came due.
func (Credentials) Update(_ context.Context, req infer.UpdateRequest[CredentialsArgs, CredentialsState]) (infer.UpdateResponse[CredentialsState], error) {
	if req.DryRun {
		return infer.UpdateResponse[CredentialsState]{Output: CredentialsState{CredentialsArgs: req.Inputs}}, nil
	}
	state, err := mintCredentials(req.Inputs, clock())
	if err != nil {
		return infer.UpdateResponse[CredentialsState]{}, err
	}
	return infer.UpdateResponse[CredentialsState]{Output: state}, nil
}

// Read keeps the state: there is nothing on a node to read.
func (Credentials) Read(_ context.Context, req infer.ReadRequest[CredentialsArgs, CredentialsState]) (infer.ReadResponse[CredentialsArgs, CredentialsState], error) {
	return infer.ReadResponse[CredentialsArgs, CredentialsState]{ID: req.ID, Inputs: req.Inputs, State: req.State}, nil
}

// Delete does nothing: a certificate cannot be revoked, and no node holds it.
func (Credentials) Delete(context.Context, infer.DeleteRequest[CredentialsState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

// mintCredentials makes both at now, valid from ClockSkew back for CredentialsLifetime.
func mintCredentials(a CredentialsArgs, now time.Time) (CredentialsState, error) {
	state := CredentialsState{CredentialsArgs: a}
	decode := func(field, v string) ([]byte, error) {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("machineSecrets.%s is not base64 of PEM; pass the talos plugin's machine.Secrets machineSecrets unchanged", field)
		}
		return b, nil
	}
	pair := func(field string, c SecretsCertPair) (*talosx509.PEMEncodedCertificateAndKey, error) {
		crt, err := decode(field+".cert", c.Cert)
		if err != nil {
			return nil, err
		}
		key, err := decode(field+".key", c.Key)
		if err != nil {
			return nil, err
		}
		return &talosx509.PEMEncodedCertificateAndKey{Crt: crt, Key: key}, nil
	}
	osCA, err := pair("certs.os", a.MachineSecrets.Certs.Os)
	if err != nil {
		return state, err
	}
	k8sCA, err := pair("certs.k8s", a.MachineSecrets.Certs.K8s)
	if err != nil {
		return state, err
	}
	from := now.Add(-node.ClockSkew)
	talosClient, err := secrets.NewAdminCertificateAndKey(from, osCA, role.MakeSet(role.Admin), node.ClockSkew+CredentialsLifetime)
	if err != nil {
		return state, fmt.Errorf("machineSecrets.certs.os (the Talos CA): mint an os:admin client certificate: %w", err)
	}
	tc := clientconfig.NewConfig(a.ClusterName, a.Endpoints, osCA.Crt, talosClient)
	talosconfig, err := tc.Bytes()
	if err != nil {
		return state, fmt.Errorf("write the talosconfig: %w", err)
	}
	kubeClient, err := kubernetesAdminCertificate(k8sCA, from, node.ClockSkew+CredentialsLifetime)
	if err != nil {
		return state, fmt.Errorf("machineSecrets.certs.k8s (the Kubernetes CA): mint the admin client certificate: %w", err)
	}
	kubeconfig, err := adminKubeconfig(a.ClusterName, a.ClusterEndpoint, k8sCA.Crt, kubeClient)
	if err != nil {
		return state, err
	}
	enc := base64.StdEncoding.EncodeToString
	state.Talosconfig, state.Kubeconfig = string(talosconfig), kubeconfig
	state.TalosClientCertificate, state.KubernetesClientCertificate = enc(talosClient.Crt), enc(kubeClient.Crt)
	if state.TalosconfigNotAfter, err = notAfterOf(talosClient.Crt); err != nil {
		return state, err
	}
	if state.KubeconfigNotAfter, err = notAfterOf(kubeClient.Crt); err != nil {
		return state, err
	}
	return state, nil
}

// kubernetesAdminCertificate is a client certificate of the Kubernetes CA with the subject the
// Kubeconfig RPC gives its admin (constants KubernetesAdminCertCommonName, ...Organization).
func kubernetesAdminCertificate(ca *talosx509.PEMEncodedCertificateAndKey, from time.Time, lifetime time.Duration) (*talosx509.PEMEncodedCertificateAndKey, error) {
	authority, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(ca)
	if err != nil {
		return nil, err
	}
	keyPair, err := talosx509.NewKeyPair(authority,
		talosx509.CommonName(constants.KubernetesAdminCertCommonName),
		talosx509.Organization(constants.KubernetesAdminCertOrganization),
		talosx509.NotBefore(from),
		talosx509.NotAfter(from.Add(lifetime)),
		talosx509.KeyUsage(stdx509.KeyUsageDigitalSignature|stdx509.KeyUsageKeyEncipherment),
		talosx509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}),
	)
	if err != nil {
		return nil, err
	}
	return talosx509.NewCertificateAndKeyFromKeyPair(keyPair), nil
}

type kubeconfigFile struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Clusters   []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CA     string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Cert string `yaml:"client-certificate-data"`
			Key  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster   string `yaml:"cluster"`
			Namespace string `yaml:"namespace"`
			User      string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	CurrentContext string `yaml:"current-context"`
}

// adminKubeconfig is the kubeconfig the Kubeconfig RPC writes: cluster <name>, user and context
// admin@<name>, namespace default.
func adminKubeconfig(cluster, server string, caCrt []byte, client *talosx509.PEMEncodedCertificateAndKey) (string, error) {
	enc := base64.StdEncoding.EncodeToString
	admin := "admin@" + cluster
	var f kubeconfigFile
	f.APIVersion, f.Kind, f.CurrentContext = "v1", "Config", admin
	f.Clusters = make([]struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CA     string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	}, 1)
	f.Clusters[0].Name, f.Clusters[0].Cluster.Server, f.Clusters[0].Cluster.CA = cluster, server, enc(caCrt)
	f.Users = make([]struct {
		Name string `yaml:"name"`
		User struct {
			Cert string `yaml:"client-certificate-data"`
			Key  string `yaml:"client-key-data"`
		} `yaml:"user"`
	}, 1)
	f.Users[0].Name, f.Users[0].User.Cert, f.Users[0].User.Key = admin, enc(client.Crt), enc(client.Key)
	f.Contexts = make([]struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster   string `yaml:"cluster"`
			Namespace string `yaml:"namespace"`
			User      string `yaml:"user"`
		} `yaml:"context"`
	}, 1)
	f.Contexts[0].Name, f.Contexts[0].Context.Cluster, f.Contexts[0].Context.Namespace, f.Contexts[0].Context.User = admin, cluster, "default", admin
	out, err := yaml.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("write the kubeconfig: %w", err)
	}
	return string(out), nil
}

func notAfterOf(crtPEM []byte) (string, error) {
	block, _ := pem.Decode(crtPEM)
	if block == nil {
		return "", errors.New("a minted certificate is not PEM")
	}
	crt, err := stdx509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("a minted certificate does not parse: %w", err)
	}
	return crt.NotAfter.UTC().Format(time.RFC3339), nil
}

// credentialsRenewal is the part of the diff inputs cannot show: with renewBefore (as declared,
// else as recorded) left or less of either recorded certificate at the provider's clock, an update
// that mints both anew. The other diff (inputs against the recorded ones) is infer's.
func credentialsRenewal(resp p.DiffResponse, req p.DiffRequest, now time.Time) p.DiffResponse {
	renew := req.Inputs.Get("renewBefore")
	if !renew.IsString() {
		renew = req.State.Get("renewBefore")
	}
	margin, err := time.ParseDuration(renew.AsString())
	if !renew.IsString() || err != nil {
		margin, _ = time.ParseDuration(DefaultRenewBefore)
	}
	due := map[string]bool{}
	for key, out := range map[string]string{"talosconfigNotAfter": "talosconfig", "kubeconfigNotAfter": "kubeconfig"} {
		v := req.State.Get(key)
		if !v.IsString() {
			continue
		}
		end, err := time.Parse(time.RFC3339, v.AsString())
		if err != nil || !now.Add(margin).Before(end) {
			due[out] = true
		}
	}
	if len(due) == 0 {
		return resp
	}
	if resp.DetailedDiff == nil {
		resp.DetailedDiff = map[string]p.PropertyDiff{}
	}
	for _, out := range []string{"talosconfig", "kubeconfig"} {
		resp.DetailedDiff[out] = p.PropertyDiff{Kind: p.Update}
	}
	resp.HasChanges = true
	return resp
}

// unknownMinted marks what an update's preview mints as unknown: the previous credentials are
// not what the update gives.
func unknownMinted(m property.Map) property.Map {
	for _, key := range []string{"talosconfig", "kubeconfig", "talosClientCertificate", "kubernetesClientCertificate", "talosconfigNotAfter", "kubeconfigNotAfter"} {
		m = m.Set(key, property.New(property.Computed).WithSecret(key == "talosconfig" || key == "kubeconfig"))
	}
	return m
}
