package provider_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
)

// machineSecrets are fresh secrets in the form the talos plugin's machine.Secrets outputs them,
// marked secret as its additionalSecretOutputs make them.
func machineSecrets(t *testing.T) (property.Value, *secrets.Bundle) {
	t.Helper()
	b, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), coreconfig.TalosVersion1_6)
	if err != nil {
		t.Fatal(err)
	}
	return secretsValue(b), b
}

// secretsValue is a bundle in the form the talos plugin's machine.Secrets outputs it, secret.
func secretsValue(b *secrets.Bundle) property.Value {
	s := func(v string) property.Value { return property.New(v) }
	e := func(v []byte) property.Value { return s(base64.StdEncoding.EncodeToString(v)) }
	pair := func(crt, key []byte) property.Value {
		return property.New(map[string]property.Value{"cert": e(crt), "key": e(key)})
	}
	c := b.Certs
	return property.New(map[string]property.Value{
		"cluster":    property.New(map[string]property.Value{"id": s(b.Cluster.ID), "secret": s(b.Cluster.Secret)}),
		"secrets":    property.New(map[string]property.Value{"bootstrapToken": s(b.Secrets.BootstrapToken), "secretboxEncryptionSecret": s(b.Secrets.SecretboxEncryptionSecret)}),
		"trustdinfo": property.New(map[string]property.Value{"token": s(b.TrustdInfo.Token)}),
		"certs": property.New(map[string]property.Value{
			"etcd": pair(c.Etcd.Crt, c.Etcd.Key), "k8s": pair(c.K8s.Crt, c.K8s.Key),
			"k8sAggregator":     pair(c.K8sAggregator.Crt, c.K8sAggregator.Key),
			"k8sServiceaccount": property.New(map[string]property.Value{"key": e(c.K8sServiceAccount.Key)}),
			"os":                pair(c.OS.Crt, c.OS.Key),
		}),
	}).WithSecret(true)
}

func renderArgs(t *testing.T, patches ...[2]string) (property.Map, *secrets.Bundle) {
	t.Helper()
	ms, b := machineSecrets(t)
	list := make([]property.Value, len(patches))
	for i, kp := range patches {
		list[i] = property.New(map[string]property.Value{"key": property.New(kp[0]), "patch": property.New(kp[1])})
	}
	return property.NewMap(map[string]property.Value{
		"clusterName":       property.New("lab"),
		"clusterEndpoint":   property.New("https://10.0.0.10:6443"),
		"machineType":       property.New("controlplane"),
		"node":              property.New("cp-1"),
		"machineSecrets":    ms,
		"talosVersion":      property.New("v1.11.5"),
		"kubernetesVersion": property.New("1.34.1"),
		"configPatches":     property.New(list),
	}), b
}

const renderToken = "talosnode:index:getMachineConfiguration"

func TestGetMachineConfigurationRendersFromTheSecretsAsASecret(t *testing.T) {
	args, b := renderArgs(t,
		[2]string{"talos-cluster:patches.all[0]", `{"machine":{"env":{"A":"all"}}}`},
		[2]string{"talos-cluster:nodes[0].patches[0]", `{"machine":{"env":{"A":"node"}}}`})
	resp, err := server(t).Invoke(p.InvokeRequest{Token: renderToken, Args: args})
	if err != nil || len(resp.Failures) > 0 {
		t.Fatalf("invoke: %v %v", err, resp.Failures)
	}
	out := resp.Return.Get("machineConfiguration")
	if !out.Secret() {
		t.Error("machineConfiguration must be secret: it holds the machine secrets")
	}
	cfg, err := configloader.NewFromBytes([]byte(out.AsString()))
	if err != nil {
		t.Fatalf("the config does not load: %v", err)
	}
	if got := cfg.RawV1Alpha1().ClusterConfig.ClusterSecret; got != b.Cluster.Secret {
		t.Errorf("cluster secret: not the one passed in")
	}
	if got := cfg.Machine().Env()["A"]; got != "node" {
		t.Errorf("patches in order: want A=node (the node's patch last), got %q", got)
	}
}

func TestGetMachineConfigurationFailsNamingTheKey(t *testing.T) {
	args, b := renderArgs(t, [2]string{"talos-cluster:patches.controlplane[0]", `{"machine":{"kubelett":{}}}`})
	_, err := server(t).Invoke(p.InvokeRequest{Token: renderToken, Args: args})
	if err == nil {
		t.Fatal("a config Talos refuses must fail the render")
	}
	want := "talos-cluster:patches.controlplane[0]: unknown key machine.kubelett (Talos: unknown keys found during decoding)"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cp-1") {
		t.Errorf("want the node and %q, got %v", want, err)
	}
	if strings.Contains(err.Error(), b.Cluster.Secret) {
		t.Error("the error gives a secret away")
	}
}
