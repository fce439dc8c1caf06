package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pki is a CA, a serving certificate for 127.0.0.1 and an admin client certificate.
type pki struct {
	ca                *x509.Certificate
	caPEM             []byte
	server            tls.Certificate
	clientPEM, keyPEM []byte
	clientCAs         *x509.CertPool
}

func newPKI(t *testing.T) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(tmpl *x509.Certificate) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	srvCert, srvKey := issue(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	server, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey := issue(&x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{
		ca: ca, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: server, clientPEM: clientCert, keyPEM: clientKey, clientCAs: pool,
	}
}

func (k pki) kubeconfig(server string) string {
	b := func(p []byte) string { return base64.StdEncoding.EncodeToString(p) }
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin@lab
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: admin@lab
  context: {cluster: lab, user: admin@lab}
current-context: admin@lab
`, server, b(k.caPEM), b(k.clientPEM), b(k.keyPEM))
}

// apiServer serves /readyz (503 until ready is set) and /api/v1/nodes, to admin clients only.
func apiServer(t *testing.T, k pki, ready *atomic.Bool, nodes *atomic.Value) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "[-]etcd failed: reason withheld", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(nodes.Load().(string)))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{k.server}, ClientCAs: k.clientCAs, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestReadyzWaitsForTheAPIServerAndNamesWhatItSaw(t *testing.T) {
	k := newPKI(t)
	var ready atomic.Bool
	var nodes atomic.Value
	nodes.Store(`{"items":[]}`)
	srv := apiServer(t, k, &ready, &nodes)
	c, err := New(k.kubeconfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Readyz(context.Background()); !strings.Contains(got, "503 Service Unavailable: [-]etcd failed") {
		t.Errorf("not ready: %q", got)
	}
	// A second address of the API server that is not up (a VIP nobody holds yet) is named too.
	if got := c.Readyz(context.Background(), "https://127.0.0.1:1"); !strings.Contains(got, "https://127.0.0.1:1/readyz: ") {
		t.Errorf("an endpoint that is down: %q", got)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		ready.Store(true)
	}()
	var seen []string
	err = Wait(context.Background(), 10*time.Second, 50*time.Millisecond, func(ctx context.Context) string { return c.Readyz(ctx) }, func(s string) { seen = append(seen, s) })
	if err != nil || len(seen) == 0 {
		t.Fatalf("wait: %v after %d progress lines", err, len(seen))
	}
	ready.Store(false)
	err = Wait(context.Background(), 300*time.Millisecond, 50*time.Millisecond, func(ctx context.Context) string { return c.Readyz(ctx) }, nil)
	if err == nil || !strings.Contains(err.Error(), "not ready within 300ms: ") || !strings.Contains(err.Error(), "etcd failed") {
		t.Errorf("timeout: %v", err)
	}
}

func TestNodesReadyNamesEveryNodeThatIsNot(t *testing.T) {
	k := newPKI(t)
	var ready atomic.Bool
	var nodes atomic.Value
	nodes.Store(`{"items":[
	  {"metadata":{"name":"cp-1"},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
	  {"metadata":{"name":"worker-1"},"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady"}]}}]}`)
	srv := apiServer(t, k, &ready, &nodes)
	c, err := New(k.kubeconfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	got := c.NodesReady(context.Background(), []string{"cp-1", "worker-1", "worker-2"})
	if got != "worker-1: Ready=False (KubeletNotReady); worker-2: not registered" {
		t.Errorf("got %q", got)
	}
	if got := c.NodesReady(context.Background(), []string{"cp-1"}); got != "" {
		t.Errorf("a ready node: %q", got)
	}
}

func TestAKubeconfigThatDoesNotLoadIsRefusedWithoutQuotingIt(t *testing.T) {
	k := newPKI(t)
	good := k.kubeconfig("https://127.0.0.1:6443")
	for name, text := range map[string]string{
		"not yaml":        "{{{",
		"no context":      strings.Replace(good, "current-context: admin@lab", "current-context: other", 1),
		"key not base64":  strings.Replace(good, "client-key-data: ", "client-key-data: !!", 1),
		"wrong key":       strings.Replace(good, base64.StdEncoding.EncodeToString(k.keyPEM), base64.StdEncoding.EncodeToString(newPKI(t).keyPEM), 1),
		"missing CA data": strings.Replace(good, "certificate-authority-data: ", "certificate-authority: ", 1),
	} {
		_, err := New(text)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(k.keyPEM)[:20]) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}
