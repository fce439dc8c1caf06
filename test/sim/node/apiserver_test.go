package node

import (
	stdx509 "crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

func TestKubeletVersionIsTheKubeletImageTag(t *testing.T) {
	for image, want := range map[string]string{
		"ghcr.io/siderolabs/kubelet:v1.34.1":                 "v1.34.1",
		"registry.local:5000/kubelet:v1.33.0@sha256:0123abc": "v1.33.0",
		"registry.local:5000/kubelet":                        "",
	} {
		cfg, err := configloader.NewFromBytes(patched(t, newCluster(t, "lab").worker, "machine:\n  kubelet:\n    image: "+image+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := kubeletVersion(cfg); got != want {
			t.Errorf("%s: %q, want %q", image, got, want)
		}
	}
}

func TestControlPlanePKIComesFromTheMachineConfig(t *testing.T) {
	for _, contract := range contracts {
		t.Run(contractName(contract), func(t *testing.T) { controlPlanePKIComesFromTheMachineConfig(t, contract) })
	}
}

// The files are the secrets bundle's, whichever shape the config carries them in (1.14: the
// KubeAPIServerCAConfig, KubeServiceAccountConfig and KubeAggregatorCAConfig documents).
func controlPlanePKIComesFromTheMachineConfig(t *testing.T, contract *config.VersionContract) {
	cl := newClusterOf(t, "lab", contract)
	cfg, err := configloader.NewFromBytes(cl.controlPlane)
	if err != nil {
		t.Fatal(err)
	}
	certs := cl.bundle.Certs
	ca, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(certs.K8s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := writePKI(dir, cfg, net.ParseIP("127.0.7.200"), ca)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		data, err := os.ReadFile(files[name])
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if got := string(read("ca.crt")); got != string(certs.K8s.Crt) {
		t.Error("ca.crt is not cluster.ca")
	}
	if got := string(read("sa.key")); got != string(certs.K8sServiceAccount.Key) {
		t.Error("sa.key is not cluster.serviceAccount.key")
	}
	if got := string(read("front-proxy-ca.crt")); got != string(certs.K8sAggregator.Crt) {
		t.Error("front-proxy-ca.crt is not cluster.aggregatorCA")
	}
	serving, err := parseCertificate(read("apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := serving.CheckSignatureFrom(ca.Crt); err != nil {
		t.Errorf("serving certificate not from the cluster CA: %v", err)
	}
	// The node's address, the endpoint's host (newCluster: https://127.0.7.1:6443), loopback and
	// the kubernetes Service's address (the first of the default 10.96.0.0/12).
	for _, ip := range []string{"127.0.7.200", "127.0.7.1", "127.0.0.1", "10.96.0.1"} {
		if !slices.ContainsFunc(serving.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP(ip)) }) {
			t.Errorf("serving certificate lacks IP SAN %s: %v", ip, serving.IPAddresses)
		}
	}
	for _, name := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc"} {
		if !slices.Contains(serving.DNSNames, name) {
			t.Errorf("serving certificate lacks DNS SAN %s: %v", name, serving.DNSNames)
		}
	}
	proxy, err := parseCertificate(read("front-proxy-client.crt"))
	if err != nil {
		t.Fatal(err)
	}
	aggregator, err := parseCertificate(certs.K8sAggregator.Crt)
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.CheckSignatureFrom(aggregator); err != nil || proxy.Subject.CommonName != "front-proxy-client" ||
		!slices.Contains(proxy.ExtKeyUsage, stdx509.ExtKeyUsageClientAuth) {
		t.Errorf("front-proxy client certificate %s: %v", proxy.Subject, err)
	}
	for _, path := range files {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 || filepath.Dir(path) != dir {
			t.Errorf("%s: %v %v", path, info.Mode(), err)
		}
	}
}
