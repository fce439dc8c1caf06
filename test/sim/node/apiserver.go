package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config"
)

// A real control plane: when the simulation is given etcd and kube-apiserver binaries
// (Trust.RunControlPlane), each cluster, once bootstrapped, gets a real etcd and a real
// kube-apiserver, started after a delay as Talos brings them up some time after the bootstrap.
// The API server listens on the bootstrap node's address, port 6443, with the cluster's own PKI
// from the applied machine config, so the Kubeconfig RPC's admin kubeconfig works against it
// unchanged. The simulator then plays every kubelet of the cluster against it (registration,
// status, Talos' node-apply updates) with that kubelet's own credentials, and the Node objects in
// KubernetesNode are read back from it: the real API server is the source of truth, its admission
// (NodeRestriction) the judge. Without binaries the in-memory model of kubernetes.go is used.

// KubernetesAPIPort is where kube-apiserver listens on a Talos control plane.
const KubernetesAPIPort = 6443

// DefaultAPIServerDelay is how long after the bootstrap etcd and the API server start unless
// ControlPlane.Delay says otherwise.
const DefaultAPIServerDelay = 3 * time.Second

// ControlPlane names the binaries of the real control plane a simulation runs.
type ControlPlane struct {
	Etcd          string
	KubeAPIServer string
	// Delay is how long after a cluster's bootstrap its etcd and API server start; 0 means
	// DefaultAPIServerDelay, a negative value none.
	Delay time.Duration
}

// RunControlPlane makes the simulation run a real etcd and kube-apiserver for each cluster once
// it is bootstrapped. Call Close to stop them.
func (t *Trust) RunControlPlane(cp ControlPlane) error {
	for _, path := range []string{cp.Etcd, cp.KubeAPIServer} {
		if info, err := os.Stat(path); err != nil {
			return err
		} else if info.IsDir() || info.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable", path)
		}
	}
	switch {
	case cp.Delay == 0:
		cp.Delay = DefaultAPIServerDelay
	case cp.Delay < 0:
		cp.Delay = 0
	}
	t.clusterMu.Lock()
	defer t.clusterMu.Unlock()
	t.controlPlane = &cp
	return nil
}

// Close stops every etcd and kube-apiserver the simulation started (their process groups) and
// removes their folders. Later bootstraps start none.
func (t *Trust) Close() {
	t.clusterMu.Lock()
	t.closed = true
	apis := slices.Collect(maps.Values(t.realAPIs))
	t.clusterMu.Unlock()
	var wg sync.WaitGroup
	for _, api := range apis {
		wg.Go(api.stop)
	}
	wg.Wait()
	t.halting.Wait()
}

// realAPI is one cluster's etcd and kube-apiserver.
type realAPI struct {
	cluster string
	// url is the API server itself (https://127.0.0.1:<backend port>), which the simulation's
	// kubelets use; clients reach it through each control plane's :6443 (frontends.go).
	url     string
	backend string
	// addresses are the machines' addresses its serving certificate names (frontends.go adds a
	// control plane that comes later).
	addresses []net.IP
	// serving is its serving certificate's template, written to servingCrt and servingKey.
	serving                *stdx509.Certificate
	servingCrt, servingKey string
	// naming are the addresses being added to the serving certificate, one at a time (nameMu).
	naming  map[string]bool
	nameMu  sync.Mutex
	ca      *talosx509.CertificateAuthority
	rootCAs *stdx509.CertPool
	admin   *kubeClient

	// recoverFrom, when set, is the snapshot its etcd is restored from before it starts
	// (recover.go); etcdURL is its etcd's client URL once started.
	recoverFrom *recovery

	mu       sync.Mutex
	ready    bool
	stopped  bool
	dir      string
	etcdURL  string
	procs    []*process
	cancel   chan struct{}
	kubelets map[string]*kubeClient
	// frontends are the control planes' :6443 by address; mirrors what each mirror pod shows.
	frontends map[string]*frontend
	mirrors   map[string]mirrorKey
	// manifestsApplied is, per control plane, the manifests its last create-only apply saw
	// (manifests.go).
	manifestsApplied map[string]string
}

// startRealAPI begins, for a cluster just bootstrapped on m, the wait and then the start of its
// control plane. The caller holds clusterMu.
func (t *Trust) startRealAPI(m member) {
	ca, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(clusterIssuingCA(m.cfg))
	if err != nil {
		log.Printf("cluster %s: no API server: cluster.ca: %v", m.cluster, err)
		return
	}
	port, err := freeLoopbackPort()
	if err != nil {
		log.Printf("cluster %s: no API server: %v", m.cluster, err)
		return
	}
	backend := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	api := &realAPI{
		cluster:   m.cluster,
		url:       "https://" + backend,
		backend:   backend,
		ca:        ca,
		rootCAs:   stdx509.NewCertPool(),
		cancel:    make(chan struct{}),
		kubelets:  map[string]*kubeClient{},
		frontends: map[string]*frontend{},
		mirrors:   map[string]mirrorKey{},

		manifestsApplied: map[string]string{},
		// A recovery's snapshot, verified by the bootstrap node (recover.go).
		recoverFrom: t.recoveries[m.cluster],
	}
	delete(t.recoveries, m.cluster)
	for _, n := range t.nodes {
		api.addresses = append(api.addresses, n.address)
	}
	api.rootCAs.AddCert(ca.Crt)
	if api.admin, err = api.client("admin", "system:masters"); err != nil {
		log.Printf("cluster %s: no API server: %v", m.cluster, err)
		return
	}
	t.realAPIs[m.cluster] = api
	cp, cfg, address := *t.controlPlane, m.cfg, m.node.address
	go func() {
		select {
		case <-time.After(cp.Delay):
		case <-api.cancel:
			return
		}
		if err := api.start(cp, cfg, address); err != nil {
			log.Printf("cluster %s: API server: %v", m.cluster, err)
			api.stop()
			return
		}
		log.Printf("cluster %s: kube-apiserver ready at %s, answering on each control plane's :%d", m.cluster, api.url, KubernetesAPIPort)
		// The kubelets register as soon as the API server answers, and look after their pods.
		t.settle()
		go t.runPods(api)
	}()
}

// start writes the PKI, starts etcd and then kube-apiserver, and waits until /readyz answers.
func (api *realAPI) start(cp ControlPlane, cfg config.Provider, address net.IP) error {
	api.mu.Lock()
	if api.stopped {
		api.mu.Unlock()
		return errors.New("stopped")
	}
	removeOrphans()
	dir, err := os.MkdirTemp("", tempPrefix)
	api.dir = dir
	api.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	files, err := writePKI(dir, cfg, address, api.ca, api.addresses...)
	if err != nil {
		return err
	}
	api.mu.Lock()
	api.serving, api.servingCrt, api.servingKey = servingTemplate(cfg, address, api.addresses...), files["apiserver.crt"], files["apiserver.key"]
	api.mu.Unlock()
	clientPort, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	peerPort, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if r := api.recoverFrom; r != nil {
		// The etcd service's recoverFromSnapshot: etcdutl restores a single member's data.
		if err := restoreDataDir(r, dir, "default", peerURL); err != nil {
			return err
		}
	}
	// As envtest runs etcd: one member, plain HTTP on loopback, no fsync.
	etcdArgs := []string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync=true",
	}
	if err := api.run("etcd", cp.Etcd, etcdArgs); err != nil {
		return err
	}
	api.mu.Lock()
	api.etcdURL = etcdURL
	api.mu.Unlock()
	serviceCIDRs := serviceCIDRs(cfg)
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=" + address.String(),
		"--secure-port=" + api.backend[strings.LastIndex(api.backend, ":")+1:],
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + files["apiserver.crt"],
		"--tls-private-key-file=" + files["apiserver.key"],
		"--client-ca-file=" + files["ca.crt"],
		"--service-account-key-file=" + files["sa.key"],
		"--service-account-signing-key-file=" + files["sa.key"],
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=" + strings.Join(serviceCIDRs, ","),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		// As envtest: no controller manager creates the default ServiceAccounts pods would need.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// The kubernetes Service's endpoint would be the node's loopback address, which Endpoints
		// validation refuses (the reconciler would retry every 10 s): the Service has none.
		"--endpoint-reconciler-type=none",
		"--requestheader-client-ca-file=" + files["front-proxy-ca.crt"],
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + files["front-proxy-client.crt"],
		"--proxy-client-key-file=" + files["front-proxy-client.key"],
	}
	if err := api.run("kube-apiserver", cp.KubeAPIServer, apiArgs); err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := api.admin.do(http.MethodGet, "/readyz", nil, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 90s: %w\n%s", err, tail(filepath.Join(dir, "kube-apiserver.log")))
		}
		select {
		case <-api.cancel:
			return errors.New("stopped")
		case <-time.After(200 * time.Millisecond):
		}
	}
	api.mu.Lock()
	api.ready = true
	api.mu.Unlock()
	return nil
}

func (api *realAPI) isReady() bool {
	api.mu.Lock()
	defer api.mu.Unlock()
	return api.ready
}

// run starts a binary with its output in <dir>/<name>.log, unless the control plane stopped.
func (api *realAPI) run(name, path string, args []string) error {
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.stopped {
		return errors.New("stopped")
	}
	logFile, err := os.Create(filepath.Join(api.dir, name+".log"))
	if err != nil {
		return err
	}
	p, err := startProcess(path, args, logFile)
	_ = logFile.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	api.procs = append(api.procs, p)
	return nil
}

// stop ends the control plane: the API server first, then etcd; then its folder goes.
func (api *realAPI) stop() {
	if procs, dir, ok := api.stopServing(); ok {
		api.kill(procs, dir)
	}
}

// stopServing marks the control plane stopped and closes its frontends; ok is false when it
// already was.
func (api *realAPI) stopServing() (procs []*process, dir string, ok bool) {
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.stopped {
		return nil, "", false
	}
	api.stopped, api.ready = true, false
	close(api.cancel)
	for _, f := range api.frontends {
		f.close()
	}
	api.frontends = map[string]*frontend{}
	return api.procs, api.dir, true
}

func (api *realAPI) kill(procs []*process, dir string) {
	for _, p := range slices.Backward(procs) {
		p.stop()
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			log.Printf("cluster %s: %v", api.cluster, err)
		}
	}
}

// process is a child in a process group of its own, killed with its group.
type process struct {
	pid  int
	done chan struct{}
}

// startProcess starts a child that dies with the simulator: it gets SIGKILL when the thread that
// started it ends (Pdeathsig), so the starting goroutine keeps its thread until the child exits.
func startProcess(path string, args []string, out *os.File) (*process, error) {
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(p.done)
		cmd := exec.Command(path, args...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// stop sends the process group SIGTERM, then SIGKILL after 10 s.
func (p *process) stop() {
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	}
}

// tempPrefix names the folders of the control planes; each holds the simulator's pid in "owner".
const tempPrefix = "talos-sim-apiserver-"

// removeOrphans removes the folders of simulators that were killed before they could (SIGKILL:
// their etcd and kube-apiserver died with them, by Pdeathsig).
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

func freeLoopbackPort() (int, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port, nil
}

// tail is the end of a log file, for an error message.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// writePKI writes the cluster's certificates and keys as kube-apiserver reads them, from the
// machine config: the cluster CA and a serving certificate it signs, the service-account key, the
// aggregator CA and a front-proxy client certificate it signs. It returns the files by name.
func writePKI(dir string, cfg config.Provider, address net.IP, ca *talosx509.CertificateAuthority, others ...net.IP) (map[string]string, error) {
	files := map[string][]byte{"ca.crt": clusterCACert(cfg)}
	if sa := serviceAccountKey(cfg); sa != nil {
		files["sa.key"] = sa.Key
	} else {
		return nil, errors.New("cluster.serviceAccount is missing")
	}

	crt, key, err := leafPEM(ca, servingTemplate(cfg, address, others...))
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	files["apiserver.crt"], files["apiserver.key"] = crt, key

	aggregator := aggregatorCA(cfg)
	if aggregator == nil {
		return nil, errors.New("cluster.aggregatorCA is missing")
	}
	aggregatorCA, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(aggregator)
	if err != nil {
		return nil, fmt.Errorf("cluster.aggregatorCA: %w", err)
	}
	crt, key, err = leafPEM(aggregatorCA, &stdx509.Certificate{
		Subject:     pkix.Name{CommonName: "front-proxy-client"},
		KeyUsage:    stdx509.KeyUsageDigitalSignature | stdx509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("front-proxy client certificate: %w", err)
	}
	files["front-proxy-ca.crt"] = aggregator.Crt
	files["front-proxy-client.crt"], files["front-proxy-client.key"] = crt, key

	paths := map[string]string{}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
		paths[name] = path
	}
	return paths, nil
}

// servingTemplate is the API server's serving certificate: the machines' addresses, loopback, the
// cluster endpoint and the kubernetes Service's names and address.
func servingTemplate(cfg config.Provider, address net.IP, others ...net.IP) *stdx509.Certificate {
	ips := append([]net.IP{address, net.IPv4(127, 0, 0, 1)}, others...)
	dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}
	if ep := clusterEndpoint(cfg); ep != nil {
		if ip := net.ParseIP(ep.Hostname()); ip != nil {
			ips = append(ips, ip)
		} else if ep.Hostname() != "" {
			dns = append(dns, ep.Hostname())
		}
	}
	for _, cidr := range serviceCIDRs(cfg) {
		// The first address of the service range is the kubernetes Service's.
		if prefix, err := netip.ParsePrefix(cidr); err == nil {
			ips = append(ips, net.IP(prefix.Masked().Addr().Next().AsSlice()))
		}
	}
	return &stdx509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    stdx509.KeyUsageDigitalSignature | stdx509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth},
	}
}

// leafPEM is a certificate from the CA with a new ECDSA P-256 key, both PEM-encoded.
func leafPEM(ca *talosx509.CertificateAuthority, template *stdx509.Certificate) (crtPEM, keyPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := issue(ca, template, priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return pemPair(der, priv)
}

// kubeClient speaks JSON to the API server with one client certificate.
type kubeClient struct {
	base string
	http *http.Client
}

// client is a kubeClient with a fresh certificate from the cluster CA for user and groups.
func (api *realAPI) client(user string, groups ...string) (*kubeClient, error) {
	crt, key, err := kubeClientCert(api.ca, user, groups...)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, err
	}
	return &kubeClient{base: api.url, http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12, RootCAs: api.rootCAs, Certificates: []tls.Certificate{pair},
		}},
	}}, nil
}

// kubelet is the client of the kubelet of Node name: system:node:<name> in system:nodes, what
// the Node authorizer and NodeRestriction recognise.
func (api *realAPI) kubelet(name string) (*kubeClient, error) {
	api.mu.Lock()
	defer api.mu.Unlock()
	if c, ok := api.kubelets[name]; ok {
		return c, nil
	}
	c, err := api.client("system:node:"+name, "system:nodes")
	if err != nil {
		return nil, err
	}
	api.kubelets[name] = c
	return c, nil
}

// apiError is the API server's refusal: its Status code and message.
type apiError struct {
	code    int
	message string
}

func (e *apiError) Error() string { return e.message }

func isNotFound(err error) bool {
	var apiErr *apiError
	return errors.As(err, &apiErr) && apiErr.code == http.StatusNotFound
}

// do sends body (JSON; a merge patch for PATCH) and decodes the answer into out.
func (c *kubeClient) do(method, path string, body, out any) error {
	contentType := "application/json"
	if method == http.MethodPatch {
		contentType = "application/merge-patch+json"
	}
	return c.send(method, path, contentType, body, out)
}

// send is do with the body's content type given (a server-side apply's, for one).
func (c *kubeClient) send(method, path, contentType string, body, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var status struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &status) != nil || status.Message == "" {
			status.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return &apiError{code: resp.StatusCode, message: status.Message}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Talos' node-apply controller remembers what it set in these annotations (JSON arrays of keys).
const (
	annotationOwnedLabels = "talos.dev/owned-labels"
	annotationOwnedTaints = "talos.dev/owned-taints"
)

// apiNode is the part of a Node object the simulator reads and writes; the rest of the object
// travels along untouched in raw.
type apiNode struct {
	raw map[string]any
}

func (n apiNode) section(name string) map[string]any {
	s, _ := n.raw[name].(map[string]any)
	if s == nil {
		s = map[string]any{}
		n.raw[name] = s
	}
	return s
}

func stringMap(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for key, value := range m {
		s, _ := value.(string)
		out[key] = s
	}
	return out
}

// kubeNode is the Node as the node-apply controller sees it.
func (n apiNode) kubeNode() *kubeNode {
	metadata := n.section("metadata")
	annotations := stringMap(metadata["annotations"])
	owned := func(annotation string) map[string]bool {
		var keys []string
		_ = json.Unmarshal([]byte(annotations[annotation]), &keys)
		set := map[string]bool{}
		for _, key := range keys {
			set[key] = true
		}
		return set
	}
	var taints []Taint
	if data, err := json.Marshal(n.section("spec")["taints"]); err == nil {
		_ = json.Unmarshal(data, &taints)
	}
	return &kubeNode{labels: stringMap(metadata["labels"]), taints: taints,
		ownedLabels: owned(annotationOwnedLabels), ownedTaints: owned(annotationOwnedTaints)}
}

// set writes labels, taints and the ownership annotations into the object.
func (n apiNode) set(k *kubeNode) {
	metadata := n.section("metadata")
	metadata["labels"] = k.labels
	annotations := stringMap(metadata["annotations"])
	for annotation, set := range map[string]map[string]bool{annotationOwnedLabels: k.ownedLabels, annotationOwnedTaints: k.ownedTaints} {
		if len(set) == 0 {
			delete(annotations, annotation)
			continue
		}
		data, _ := json.Marshal(slices.Sorted(maps.Keys(set)))
		annotations[annotation] = string(data)
	}
	metadata["annotations"] = annotations
	spec := n.section("spec")
	if len(k.taints) == 0 {
		delete(spec, "taints")
	} else {
		spec["taints"] = k.taints
	}
}

func sameNode(a, b *kubeNode) bool {
	return maps.Equal(a.labels, b.labels) && slices.Equal(a.taints, b.taints) &&
		maps.Equal(a.ownedLabels, b.ownedLabels) && maps.Equal(a.ownedTaints, b.ownedTaints)
}

// realKubelet is runKubelet against the real API server: while the machine runs, its kubelet
// registers the Node (a create with its own credentials) and posts its status (Ready, its
// version), then Talos' node-apply controller updates labels and taints (admin credentials on
// control planes, the kubelet's on workers, judged by NodeRestriction). It returns the Node as
// the API server has it, nil before the API server is ready or the Node exists.
func (t *Trust) realKubelet(api *realAPI, m member, bootstrapped bool) *KubernetesNode {
	if m.cfg == nil || !api.isReady() {
		return nil
	}
	name := nodeName(m.hostname)
	if name == "" {
		return nil
	}
	if m.up && bootstrapped {
		refusal, err := api.runKubelet(name, m)
		if err != nil {
			log.Printf("node %s: kubelet: %v", m.node.address, err)
		} else {
			t.nodeApply[m.node] = refusal
		}
	}
	var stored apiNode
	if err := api.admin.do(http.MethodGet, "/api/v1/nodes/"+name, nil, &stored.raw); err != nil {
		if !isNotFound(err) {
			log.Printf("node %s: reading Node %s: %v", m.node.address, name, err)
		}
		return nil
	}
	k := stored.kubeNode()
	return &KubernetesNode{Name: name, Labels: k.labels, Taints: append([]Taint{}, k.taints...), Error: t.nodeApply[m.node]}
}

// runKubelet registers and updates the Node; it returns the API server's refusal of the
// node-apply update ("" when it went through), or an error when the kubelet's own steps failed.
func (api *realAPI) runKubelet(name string, m member) (string, error) {
	kubelet, err := api.kubelet(name)
	if err != nil {
		return "", err
	}
	err = kubelet.do(http.MethodGet, "/api/v1/nodes/"+name, nil, &map[string]any{})
	if isNotFound(err) {
		taints, terr := registerWithTaints(m.cfg, m.running)
		if terr != nil {
			return "", nil // Talos cannot render the kubelet configuration: no kubelet runs
		}
		node := map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": name, "labels": kubeletNodeLabels(name)},
			"spec":     map[string]any{"taints": taints},
		}
		err = kubelet.do(http.MethodPost, "/api/v1/nodes", node, nil)
	}
	if err != nil {
		return "", fmt.Errorf("registering Node %s: %w", name, err)
	}
	var stored apiNode
	if err := kubelet.do(http.MethodPatch, "/api/v1/nodes/"+name+"/status", kubeletStatus(name, m), &stored.raw); err != nil {
		return "", fmt.Errorf("posting Node %s status: %w", name, err)
	}

	// The API server taints a new Node node.kubernetes.io/not-ready (TaintNodesByCondition); the
	// node lifecycle controller of the controller manager, which does not run here, removes the
	// taint once the Node is Ready. The simulator does that part, with admin credentials.
	if taints, _ := stored.section("spec")["taints"].([]any); slices.ContainsFunc(taints, isNotReadyTaint) {
		stored.section("spec")["taints"] = slices.DeleteFunc(taints, isNotReadyTaint)
		var cleared apiNode
		if err := api.admin.do(http.MethodPut, "/api/v1/nodes/"+name, stored.raw, &cleared.raw); err != nil {
			return "", fmt.Errorf("removing Node %s's not-ready taint: %w", name, err)
		}
		stored = cleared
	}
	if m.controlPlane() {
		uid, _ := stored.section("metadata")["uid"].(string)
		if err := api.syncMirrorPods(kubelet, name, uid, m); err != nil {
			log.Printf("node %s: kubelet: %v", m.node.address, err)
		}
	}
	current := stored.kubeNode()
	updated := nodeApplied(current, m.cfg)
	if sameNode(current, updated) {
		return "", nil
	}
	stored.set(updated)
	writer := kubelet
	if m.controlPlane() {
		writer = api.admin
	}
	if err := writer.do(http.MethodPut, "/api/v1/nodes/"+name, stored.raw, nil); err != nil {
		var apiErr *apiError
		if errors.As(err, &apiErr) {
			return apiErr.message, nil
		}
		return "", fmt.Errorf("node-apply update of Node %s: %w", name, err)
	}
	return "", nil
}

func isNotReadyTaint(taint any) bool {
	t, _ := taint.(map[string]any)
	return t["key"] == "node.kubernetes.io/not-ready"
}

// kubeletStatus is the status a running kubelet posts: Ready, its addresses, and what it runs.
func kubeletStatus(name string, m member) map[string]any {
	now := time.Now().UTC().Format(time.RFC3339)
	ready := map[string]any{
		"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
		"lastHeartbeatTime": now, "lastTransitionTime": now,
	}
	if m.node.kubeletUnhealthy() {
		// The fault SetKubeletNeverReady: the kubelet runs and reports itself not ready.
		ready["status"], ready["reason"], ready["message"] = "False", "KubeletNotReady", "container runtime status check may not have completed yet"
	}
	return map[string]any{"status": map[string]any{
		"conditions": []map[string]any{ready},
		"addresses": []map[string]any{
			{"type": "InternalIP", "address": m.node.address.String()},
			{"type": "Hostname", "address": name},
		},
		"nodeInfo": map[string]any{
			"kubeletVersion":          m.node.runningKubeletVersion(),
			"operatingSystem":         "linux",
			"architecture":            "amd64",
			"osImage":                 "Talos (" + m.node.State().TalosVersion + ")",
			"kernelVersion":           "6.12.57-talos",
			"containerRuntimeVersion": "containerd://2.1.5",
			"machineID":               "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "",
		},
	}}
}

// kubeletVersion is the tag of machine.kubelet.image, the kubelet release the machine runs.
func kubeletVersion(cfg config.Provider) string {
	image := kubeletImage(cfg)
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return ""
}
