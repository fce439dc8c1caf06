package node

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Each control plane of a Talos cluster runs its own kube-apiserver on its address, port 6443;
// the simulation runs one real kube-apiserver per cluster (on a loopback port of its own) and
// puts a frontend on each control plane's address:6443 that passes connections through to it
// while that machine is up and its kube-apiserver static pod is Ready (staticpods.go). So a
// control plane whose API server refuses its new flags stops answering :6443, as a real one
// does, while the others still answer. The serving certificate names every machine's address
// known when the API server started; a control plane that comes later is added to it before its
// :6443 opens (Talos issues each control plane's kube-apiserver a certificate naming its own
// addresses: internal/app/machined/pkg/controllers/secrets/kubernetes.go, from the node's
// CertSANs), and kube-apiserver reloads its --tls-cert-file when the file changes.

// frontend is one control plane's :6443.
type frontend struct {
	lis   net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

// syncFrontends opens the :6443 of each control plane in up whose API server pod is Ready and
// closes the others (their open connections too). The caller holds clusterMu.
func (api *realAPI) syncFrontends(up map[string]bool, settle func()) {
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.stopped || !api.ready {
		return
	}
	for address, f := range api.frontends {
		if !up[address] {
			f.close()
			delete(api.frontends, address)
		}
	}
	for address := range up {
		if _, open := api.frontends[address]; open {
			continue
		}
		if ip := net.ParseIP(address); !slices.ContainsFunc(api.addresses, ip.Equal) {
			if !api.naming[address] && api.serving != nil {
				if api.naming == nil {
					api.naming = map[string]bool{}
				}
				api.naming[address] = true
				go api.name(ip, settle)
			}
			continue
		}
		lis, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(KubernetesAPIPort)))
		if err != nil {
			log.Printf("cluster %s: kube-apiserver of %s: %v", api.cluster, address, err)
			continue
		}
		f := &frontend{lis: lis, conns: map[net.Conn]bool{}}
		api.frontends[address] = f
		go f.serve(api.backend)
	}
}

func (f *frontend) serve(backend string) {
	for {
		conn, err := f.lis.Accept()
		if err != nil {
			return
		}
		if !f.track(conn, true) {
			_ = conn.Close()
			return
		}
		go func() {
			defer f.track(conn, false)
			defer conn.Close() //nolint:errcheck
			up, err := net.Dial("tcp", backend)
			if err != nil {
				return
			}
			if !f.track(up, true) {
				_ = up.Close()
				return
			}
			defer f.track(up, false)
			defer up.Close() //nolint:errcheck
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
			go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// track adds or removes an open connection; it refuses to add once the frontend closed.
func (f *frontend) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.done {
			return false
		}
		f.conns[c] = true
		return true
	}
	delete(f.conns, c)
	return true
}

// close stops answering: the listener and every connection through it.
func (f *frontend) close() {
	f.mu.Lock()
	f.done = true
	conns := f.conns
	f.conns = map[net.Conn]bool{}
	f.mu.Unlock()
	if err := f.lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Printf("closing %s: %v", f.lis.Addr(), err)
	}
	for c := range conns {
		_ = c.Close()
	}
}

// syncFrontends opens, per cluster with a real API server, the :6443 of each control plane that
// is up with its kube-apiserver pod Ready. The caller holds clusterMu.
func (t *Trust) syncFrontends(members []member) {
	for cluster, api := range t.realAPIs {
		up := map[string]bool{}
		for _, m := range members {
			if m.cluster == cluster && m.controlPlane() && m.up && m.node.apiServerReady() {
				up[m.node.address.String()] = true
			}
		}
		api.syncFrontends(up, t.settle)
	}
}

// name adds a control plane's address to the API server's serving certificate (the key, then the
// certificate, each replaced at once), waits until the API server serves the new one (bounded),
// and then settles the cluster, which opens the control plane's :6443.
func (api *realAPI) name(ip net.IP, settle func()) {
	api.nameMu.Lock()
	defer api.nameMu.Unlock()
	api.mu.Lock()
	template := *api.serving
	template.IPAddresses = append(slices.Clone(api.serving.IPAddresses), ip)
	crtPath, keyPath, backend := api.servingCrt, api.servingKey, api.backend
	api.mu.Unlock()
	done := func(ok bool) {
		api.mu.Lock()
		delete(api.naming, ip.String())
		if ok {
			api.addresses = append(api.addresses, ip)
			api.serving = &template
		}
		api.mu.Unlock()
		if ok {
			settle()
		}
	}
	crt, key, err := leafPEM(api.ca, &template)
	if err == nil {
		err = replaceFile(keyPath, key)
	}
	if err == nil {
		err = replaceFile(crtPath, crt)
	}
	if err != nil {
		log.Printf("cluster %s: kube-apiserver certificate for %s: %v", api.cluster, ip, err)
		done(false)
		return
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		conn, err := tls.Dial("tcp", backend, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the certificate served
		if err != nil {
			continue
		}
		certs := conn.ConnectionState().PeerCertificates
		_ = conn.Close()
		if len(certs) > 0 && slices.ContainsFunc(certs[0].IPAddresses, ip.Equal) {
			done(true)
			return
		}
	}
	log.Printf("cluster %s: kube-apiserver did not serve a certificate naming %s within 10s", api.cluster, ip)
	done(false)
}

// replaceFile writes data to a new file beside path and renames it over path.
func replaceFile(path string, data []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
