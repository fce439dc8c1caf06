// Package apiserver checks the simulator's real control plane: etcd and kube-apiserver started for
// a bootstrapped cluster, with the cluster's own PKI, and the simulated kubelets registered in it.
package apiserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

const (
	clusterName = "sim-apiserver"
	// The release the generated configs' kubelet image carries (Talos 1.11's Kubernetes); the real
	// API server is setup's KUBE_APISERVER_VERSION (1.37), within the kubelet's three-minor skew.
	kubernetesVersion = "1.34.4"
	// How long after the bootstrap the control plane starts here.
	delay = 2 * time.Second
	// The factory's id for a schematic with only siderolabs/intel-ucode.
	intelUcodeSchematic = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"
)

type simNode struct {
	*node.Node
	address, hostname string
	controlPlane      bool
	// patch is the node's own config patch beyond its hostname.
	patch string
}

func TestRealAPIServer(t *testing.T) {
	etcd, apiServer := toolbin.Binary(t, "ETCD", "etcd"), toolbin.Binary(t, "KUBE_APISERVER", "kube-apiserver")
	cluster := simtest.NewCluster(t, clusterName, "https://"+net.JoinHostPort("127.0.18.11", "6443"))
	trust := cluster.Trust
	if err := trust.RunControlPlane(node.ControlPlane{Etcd: etcd, KubeAPIServer: apiServer, Delay: delay}); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			trust.Close()
		}
	})
	// The folder of a simulator that was killed (SIGKILL) before it could remove it.
	orphan := orphanFolder(t)
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "talos-sim-apiserver-*"))

	nodes := []*simNode{
		{address: "127.0.18.11", hostname: "cp-1", controlPlane: true},
		{address: "127.0.18.12", hostname: "cp-2", controlPlane: true},
		{address: "127.0.18.13", hostname: "cp-3", controlPlane: true},
		// worker-1's label is one a kubelet may set; worker-2's config asks for one it may not.
		{address: "127.0.18.21", hostname: "worker-1", patch: "machine:\n  nodeLabels: {example.com/tier: web}\n"},
		{address: "127.0.18.22", hostname: "worker-2", patch: "machine:\n  nodeLabels: {example.com/tier: db, node-role.kubernetes.io/storage: \"\"}\n"},
	}
	for _, n := range nodes {
		n.Node = cluster.NodeOn(t, n.address, toolbin.FreePort(t, n.address), "v1.11.5", intelUcodeSchematic)
	}

	endpoint := cluster.Endpoint
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, n := range nodes {
		kind := talosmachine.TypeWorker
		if n.controlPlane {
			kind = talosmachine.TypeControlPlane
		}
		data := cluster.Config(t, kind, kubernetesVersion, "")
		patches := []string{"machine:\n  network:\n    hostname: " + n.hostname + "\n"}
		if n.patch != "" {
			patches = append(patches, n.patch)
		}
		c, err := client.New(ctx, client.WithEndpoints(n.Addr()), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: simtest.Patched(t, data, patches...), Mode: machine.ApplyConfigurationRequest_AUTO})
		_ = c.Close()
		if err != nil {
			t.Fatalf("%s: apply: %v", n.hostname, err)
		}
	}

	cp1, err := client.New(ctx, client.WithConfig(cluster.Talosconfig), client.WithEndpoints(nodes[0].Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cp1.Close()
	cp1ctx := client.WithNode(ctx, nodes[0].address)
	if err := cp1.Bootstrap(cp1ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}
	bootstrapped := time.Now()
	kubeconfig, err := cp1.Kubeconfig(cp1ctx)
	if err != nil {
		t.Fatal(err)
	}
	restConfig, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if restConfig.Host != endpoint {
		t.Fatalf("kubeconfig server %s, want the cluster endpoint %s", restConfig.Host, endpoint)
	}
	adminCert := parseCert(t, restConfig.CertData)
	if !slices.Contains(adminCert.Subject.Organization, "system:masters") {
		t.Fatalf("kubeconfig's client certificate: organizations %v, want system:masters", adminCert.Subject.Organization)
	}
	restConfig.Timeout = 5 * time.Second
	admin := kubernetes.NewForConfigOrDie(restConfig)

	t.Run("readyz only after the delay", func(t *testing.T) {
		readyz := func() error {
			_, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		}
		if err := readyz(); err == nil {
			t.Fatalf("/readyz answered right after the bootstrap, before the %s delay", delay)
		} else if !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("/readyz right after the bootstrap: %v, want connection refused", err)
		}
		for {
			err := readyz()
			if err == nil {
				break
			}
			if time.Since(bootstrapped) > time.Minute {
				t.Fatalf("/readyz still failing a minute after the bootstrap: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if took := time.Since(bootstrapped); took < delay {
			t.Fatalf("/readyz answered %s after the bootstrap, before the %s delay", took, delay)
		} else {
			t.Logf("/readyz answered %s after the bootstrap (delay %s)", took.Round(time.Millisecond), delay)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("every configured node is Ready with its kubelet version", func(t *testing.T) {
		var list *corev1.NodeList
		deadline := time.Now().Add(30 * time.Second)
		// Every simulated kubelet is done once the simulator shows each node's Node.
		for {
			if !slices.ContainsFunc(nodes, func(n *simNode) bool { return n.State().KubernetesNode == nil }) {
				list, err = admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				if err == nil && len(list.Items) == len(nodes) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("Nodes: %v, %v; want %d", names(list), err, len(nodes))
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, n := range nodes {
			i := slices.IndexFunc(list.Items, func(k corev1.Node) bool { return k.Name == n.hostname })
			if i < 0 {
				t.Errorf("no Node %s among %v", n.hostname, names(list))
				continue
			}
			k := list.Items[i]
			if !ready(k) {
				t.Errorf("Node %s not Ready: %+v", k.Name, k.Status.Conditions)
			}
			if got := k.Status.NodeInfo.KubeletVersion; got != "v"+kubernetesVersion {
				t.Errorf("Node %s kubelet version %q, want v%s", k.Name, got, kubernetesVersion)
			}
			want := map[string]string{
				"kubernetes.io/hostname": n.hostname, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
			}
			switch n.hostname {
			case "cp-1", "cp-2", "cp-3":
				want["node-role.kubernetes.io/control-plane"] = ""
				want["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
			case "worker-1":
				want["example.com/tier"] = "web"
			}
			if !maps.Equal(k.Labels, want) {
				t.Errorf("Node %s labels %v, want %v", k.Name, k.Labels, want)
			}
			// Registration's taints and node-apply's; the API server's not-ready taint is gone, as
			// the node lifecycle controller removes it once the Node is Ready.
			var wantTaints []corev1.Taint
			if n.controlPlane {
				wantTaints = []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}
			}
			if !slices.Equal(k.Spec.Taints, wantTaints) {
				t.Errorf("Node %s taints %v, want %v", k.Name, k.Spec.Taints, wantTaints)
			}
			// The simulator's view of the Node is the API server's.
			state := n.State().KubernetesNode
			if state == nil || !maps.Equal(state.Labels, k.Labels) {
				t.Errorf("node %s: State().KubernetesNode %+v, want labels %v", n.hostname, state, k.Labels)
				continue
			}
			wantErr := ""
			if n.hostname == "worker-2" {
				wantErr = `nodes "worker-2" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/storage`
			}
			if state.Error != wantErr {
				t.Errorf("node %s: node-apply refusal %q, want %q", n.hostname, state.Error, wantErr)
			}
		}
	})

	t.Run("NodeRestriction judges a worker's kubelet credentials", func(t *testing.T) {
		ca, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(cluster.Bundle.Certs.K8s)
		if err != nil {
			t.Fatal(err)
		}
		kubelet := kubernetes.NewForConfigOrDie(clientConfig(t, restConfig, ca, "system:node:worker-1", "system:nodes"))
		patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/worker":""}}}`)
		_, err = kubelet.CoreV1().Nodes().Patch(ctx, "worker-1", types.MergePatchType, patch, metav1.PatchOptions{})
		want := `nodes "worker-1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/worker`
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("worker-1's kubelet setting node-role.kubernetes.io/worker: %v, want Forbidden %q", err, want)
		}
		// A label a kubelet may set goes through with the same credentials.
		allowed := []byte(`{"metadata":{"labels":{"node.kubernetes.io/pool":"general"}}}`)
		if _, err := kubelet.CoreV1().Nodes().Patch(ctx, "worker-1", types.MergePatchType, allowed, metav1.PatchOptions{}); err != nil {
			t.Fatalf("worker-1's kubelet setting node.kubernetes.io/pool: %v", err)
		}
		// Nor may it touch another Node.
		if _, err := kubelet.CoreV1().Nodes().Patch(ctx, "worker-2", types.MergePatchType, allowed, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("worker-1's kubelet patching worker-2: %v, want Forbidden", err)
		}
		k, err := admin.CoreV1().Nodes().Patch(ctx, "worker-1", types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("the admin setting node-role.kubernetes.io/worker: %v", err)
		}
		if _, ok := k.Labels["node-role.kubernetes.io/worker"]; !ok {
			t.Fatalf("labels after the admin's patch: %v", k.Labels)
		}
	})

	t.Run("Close stops the control plane and removes its folder", func(t *testing.T) {
		after, _ := filepath.Glob(filepath.Join(os.TempDir(), "talos-sim-apiserver-*"))
		// Only this process's folders: another test run on the machine may be making its own.
		self := strconv.Itoa(os.Getpid())
		ours := slices.DeleteFunc(after, func(dir string) bool {
			owner, err := os.ReadFile(filepath.Join(dir, "owner"))
			return slices.Contains(before, dir) || err != nil || strings.TrimSpace(string(owner)) != self
		})
		if len(ours) == 0 {
			t.Fatal("no talos-sim-apiserver-* folder while the control plane runs")
		}
		trust.Close()
		closed = true
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(nodes[0].address, "6443"), time.Second); err == nil {
			conn.Close()
			t.Fatal("something still listens on 6443 after Close")
		}
		for _, dir := range append(ours, orphan) {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after Close: %v, want it gone", dir, err)
			}
		}
	})
}

// orphanFolder is a control plane folder whose owner process has exited.
func orphanFolder(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "talos-sim-apiserver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func ready(k corev1.Node) bool {
	return slices.ContainsFunc(k.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
}

func names(list *corev1.NodeList) []string {
	if list == nil {
		return nil
	}
	var out []string
	for _, k := range list.Items {
		out = append(out, k.Name)
	}
	return out
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}

// clientConfig is base with a client certificate for user and groups from the cluster CA.
func clientConfig(t *testing.T, base *rest.Config, ca *talosx509.CertificateAuthority, user string, groups ...string) *rest.Config {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: user, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca.Crt, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(base)
	cfg.CertData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cfg.KeyData = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return cfg
}
