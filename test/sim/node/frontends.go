package node

import (
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
)

// Each control plane of a Talos cluster runs its own kube-apiserver on its address, port 6443;
// the simulation runs one real kube-apiserver per cluster (on a loopback port of its own) and
// puts a frontend on each control plane's address:6443 that passes connections through to it
// while that machine is up and its kube-apiserver static pod is Ready (staticpods.go). So a
// control plane whose API server refuses its new flags stops answering :6443, as a real one
// does, while the others still answer. The serving certificate names every machine's address
// known when the API server started.

// frontend is one control plane's :6443.
type frontend struct {
	lis   net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

// syncFrontends opens the :6443 of each control plane in up whose API server pod is Ready and
// closes the others (their open connections too). The caller holds clusterMu.
func (api *realAPI) syncFrontends(up map[string]bool) {
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
		api.syncFrontends(up)
	}
}
