package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

// A control plane configured after the API server started (one added to the cluster later)
// answers its own :6443 with a certificate naming its address, as its own kube-apiserver's would
// (Talos issues it from the node's addresses: internal/app/machined/pkg/controllers/secrets/
// kubernetes.go).
func TestAControlPlaneAddedLaterAnswersItsOwnAddressWithACertificateNamingIt(t *testing.T) {
	etcd, apiServer := toolbin.Binary(t, "ETCD", "etcd"), toolbin.Binary(t, "KUBE_APISERVER", "kube-apiserver")
	cluster := simtest.NewCluster(t, "late-cp", "https://127.0.38.41:6443")
	if err := cluster.Trust.RunControlPlane(node.ControlPlane{Etcd: etcd, KubeAPIServer: apiServer, Delay: -1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Trust.Close)
	config := func(name string) []byte {
		return simtest.Patched(t, cluster.Config(t, talosmachine.TypeControlPlane, kubernetesVersion, ""), "machine:\n  network:\n    hostname: "+name+"\n")
	}
	cp1 := cluster.Node(t, "127.0.38.41", "v1.11.5", intelUcodeSchematic)
	simtest.Apply(t, cp1, config("cp-1"))
	cluster.Bootstrap(t, cp1)

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cluster.Bundle.Certs.K8s.Crt) {
		t.Fatal("no cluster CA")
	}
	// handshake is a TLS handshake with address:6443 verifying its certificate names address.
	handshake := func(address string) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort(address, "6443"), &tls.Config{RootCAs: roots, ServerName: address})
		if err == nil {
			_ = conn.Close()
		}
		return err
	}
	await := func(address string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err = handshake(address); err == nil {
				return
			}
		}
		t.Fatalf("%s:6443: %v", address, err)
	}
	await("127.0.38.41")

	cp2 := cluster.Node(t, "127.0.38.42", "v1.11.5", intelUcodeSchematic)
	simtest.Apply(t, cp2, config("cp-2"))
	await("127.0.38.42")
	// cp-1 still answers with the certificate that now names both.
	if err := handshake("127.0.38.41"); err != nil {
		t.Fatal(err)
	}
}
