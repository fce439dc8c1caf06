// talos-sim runs simulated Talos nodes and an Image Factory on loopback for end-to-end tests.
//
//	talos-sim -nodes 127.0.0.11,127.0.0.12 -links enp1s0 -factory 127.0.0.1:18080 -control 127.0.0.1:18081 -ready-file /tmp/sim.ready
//
// With -etcd and -kube-apiserver, a bootstrapped cluster runs a real etcd and kube-apiserver (on
// the bootstrap node's address, port 6443) after -apiserver-delay.
//
// Control endpoint (JSON): GET /state (nodes, timeline, each cluster's etcd members); POST /nodes/<address>/stop and /nodes/<address>/start;
// POST /nodes/<address>/set {"talosVersion", "schematic", "configPatch"} (a change made by hand);
// POST /nodes/<address>/fault {"bootFails": bool, "kubeletNeverReady": bool, "staticPodFails": component}; POST /nodes/<address>/etcd {"healthy": bool}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"talos-cluster/sim/factory"
	"talos-cluster/sim/node"
)

func main() {
	nodesFlag := flag.String("nodes", "", "comma-separated loopback addresses, one simulated node each (port 50000)")
	links := flag.String("links", strings.Join(node.DefaultLinks, ","), "comma-separated network link names every node has, in bus order")
	factoryAddr := flag.String("factory", "127.0.0.1:18080", "listen address of the simulated Image Factory")
	controlAddr := flag.String("control", "127.0.0.1:18081", "listen address of the control endpoint")
	talosVersion := flag.String("talos-version", "v1.11.5", "release the nodes report as running")
	schematicID := flag.String("schematic", IntelUcodeSchematic, "schematic id of the image the nodes booted from")
	versions := flag.String("factory-versions", "v1.11.5,v1.10.7", "Talos versions the factory lists")
	extensions := flag.String("factory-extensions", "siderolabs/intel-ucode,siderolabs/amd-ucode,siderolabs/iscsi-tools,siderolabs/util-linux-tools,siderolabs/qemu-guest-agent",
		"official extensions the factory accepts")
	readyFile := flag.String("ready-file", "", "written once every listener is up")
	rebootTime := flag.Duration("reboot-time", node.DefaultRebootTime, "how long a reboot (upgrade, apply, reboot) keeps a node down")
	staticPodLag := flag.Duration("static-pod-lag", node.DefaultStaticPodLag, "how often a node refreshes its view of its static pods (Talos: 15s); MachineStatus lags them by up to this")
	etcdJoinTime := flag.Duration("etcd-join-time", 0, "how long a control plane's etcd member takes to rejoin after a boot (the node is ready before)")
	etcdPromoteTime := flag.Duration("etcd-promote-time", node.DefaultEtcdPromoteTime, "how long a control plane's etcd member stays a learner once it joined a cluster, before etcd promotes it (0: at once)")
	nodeMonitorGrace := flag.Duration("node-monitor-grace", node.DefaultNodeMonitorGracePeriod, "how long a Node's kubelet may be silent before its Ready condition turns Unknown (kube-controller-manager's --node-monitor-grace-period; needs -etcd and -kube-apiserver)")
	drainTimeout := flag.Duration("drain-timeout", node.DefaultDrainTimeout, "how long a graceful reset's drain may take before the reset goes on (Talos: 5m)")
	etcd := flag.String("etcd", "", "etcd binary: with -kube-apiserver, each bootstrapped cluster runs a real etcd and API server")
	apiServer := flag.String("kube-apiserver", "", "kube-apiserver binary, listening on the bootstrapped control plane's address, port 6443 (needs -etcd)")
	apiServerDelay := flag.Duration("apiserver-delay", node.DefaultAPIServerDelay, "how long after the bootstrap etcd and the API server start")
	flag.Parse()

	var controlPlane *node.ControlPlane
	switch {
	case *etcd != "" && *apiServer != "":
		delay := *apiServerDelay
		if delay == 0 {
			delay = -1 // ControlPlane's zero value is the default delay; the flag's 0 means none
		}
		controlPlane = &node.ControlPlane{Etcd: *etcd, KubeAPIServer: *apiServer, Delay: delay}
	case *etcd != "" || *apiServer != "":
		log.Fatal("-etcd and -kube-apiserver go together")
	}
	nodeOpts := []node.Option{node.WithRebootTime(*rebootTime), node.WithEtcdJoinTime(*etcdJoinTime), node.WithStaticPodLag(*staticPodLag),
		node.WithEtcdPromoteTime(*etcdPromoteTime), node.WithDrainTimeout(*drainTimeout)}
	if err := run(*nodesFlag, split(*links), *factoryAddr, *controlAddr, *talosVersion, *schematicID, split(*versions), split(*extensions), *readyFile, nodeOpts, controlPlane, *nodeMonitorGrace); err != nil {
		log.Fatal(err)
	}
}

func split(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func loopbackListen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s is not a loopback address", addr)
	}
	return net.Listen("tcp", addr)
}

// IntelUcodeSchematic is the factory's id for a schematic holding only siderolabs/intel-ucode.
const IntelUcodeSchematic = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"

func run(nodeList string, links []string, factoryAddr, controlAddr, talosVersion, schematicID string, versions, extensions []string, readyFile string, nodeOpts []node.Option, controlPlane *node.ControlPlane, nodeMonitorGrace time.Duration) error {
	trust := node.NewTrust()
	trust.SetNodeMonitorGracePeriod(nodeMonitorGrace)
	// Stops the etcd and kube-apiserver processes (their process groups) and removes their folders;
	// should this process die without it, the kernel kills them (Pdeathsig).
	defer trust.Close()
	if controlPlane != nil {
		if err := trust.RunControlPlane(*controlPlane); err != nil {
			return err
		}
	}
	f := factory.New(versions, extensions)
	f.Host = factoryAddr
	trust.SetInstallers(f)
	nodes := map[string]*node.Node{}
	var order []string
	for _, addr := range split(nodeList) {
		n, err := node.New(addr, node.APIPort, talosVersion, schematicID, trust, append([]node.Option{node.WithLinks(links...)}, nodeOpts...)...)
		if err != nil {
			return err
		}
		if err := n.Start(); err != nil {
			return fmt.Errorf("node %s: %w", addr, err)
		}
		nodes[addr] = n
		order = append(order, addr)
	}

	factoryLis, err := loopbackListen(factoryAddr)
	if err != nil {
		return fmt.Errorf("factory: %w", err)
	}
	controlLis, err := loopbackListen(controlAddr)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	factorySrv := &http.Server{Handler: logRequests("factory", f), ReadHeaderTimeout: 5 * time.Second}
	controlSrv := &http.Server{Handler: control(nodes, order, f, trust), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = factorySrv.Serve(factoryLis) }()
	go func() { _ = controlSrv.Serve(controlLis) }()

	log.Printf("talos-sim: %d nodes (%s), links %s, factory http://%s, control http://%s", len(nodes), strings.Join(order, ", "), strings.Join(links, ","), factoryAddr, controlAddr)
	if readyFile != "" {
		if err := os.WriteFile(readyFile, []byte("ready\n"), 0o644); err != nil {
			return err
		}
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range nodes {
		n.Stop()
	}
	return errors.Join(factorySrv.Shutdown(ctx), controlSrv.Shutdown(ctx))
}

func logRequests(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s: %s %s", name, r.Method, r.URL.Path)
		h.ServeHTTP(w, r)
	})
}

type simState struct {
	Nodes          []node.State         `json:"nodes"`
	SchematicPosts int                  `json:"schematicPosts"`
	Timeline       []node.TimelineEntry `json:"timeline"`
	// Etcd is each bootstrapped cluster's etcd member list (an empty list before any bootstrap).
	Etcd []node.EtcdCluster `json:"etcd"`
}

// fault is the body of POST /nodes/<address>/fault: any of its faults, at least one.
type fault struct {
	BootFails         *bool `json:"bootFails"`
	KubeletNeverReady *bool `json:"kubeletNeverReady"`
	// StaticPodFails names the control-plane component whose pod never turns Ready from its next
	// start; "" clears the fault of every component.
	StaticPodFails *string `json:"staticPodFails"`
}

const faultUsage = `fault: body must be JSON with at least one of {"bootFails": true|false, "kubeletNeverReady": true|false, "staticPodFails": "kube-apiserver"|"kube-controller-manager"|"kube-scheduler"|""}`

// apply sets the faults the body names on n, or refuses the body (changing nothing).
func (f fault) apply(n *node.Node) error {
	if f.BootFails == nil && f.KubeletNeverReady == nil && f.StaticPodFails == nil {
		return errors.New(faultUsage)
	}
	if f.StaticPodFails != nil && *f.StaticPodFails != "" && !slices.Contains(node.Components(), *f.StaticPodFails) {
		return fmt.Errorf("%s: unknown component %q", faultUsage, *f.StaticPodFails)
	}
	if f.BootFails != nil {
		n.SetBootFails(*f.BootFails)
	}
	if f.KubeletNeverReady != nil {
		n.SetKubeletNeverReady(*f.KubeletNeverReady)
	}
	if f.StaticPodFails != nil {
		for _, c := range node.Components() {
			if err := n.SetStaticPodFails(c, c == *f.StaticPodFails); err != nil {
				return err
			}
		}
	}
	return nil
}

// etcdFault is the body of POST /nodes/<address>/etcd.
type etcdFault struct {
	Healthy *bool `json:"healthy"`
}

// decodeStrict reads a JSON body with unknown fields refused.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func control(nodes map[string]*node.Node, order []string, f *factory.Server, trust *node.Trust) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		state := simState{SchematicPosts: f.Posts(), Timeline: trust.Timeline(), Etcd: trust.EtcdMembers()}
		for _, addr := range order {
			state.Nodes = append(state.Nodes, nodes[addr].State())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(state)
	})
	mux.HandleFunc("POST /nodes/{address}/{action}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := nodes[r.PathValue("address")]
		if !ok {
			http.Error(w, "no such node", http.StatusNotFound)
			return
		}
		switch r.PathValue("action") {
		case "stop":
			n.Stop()
		case "start":
			if err := n.Start(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		case "set":
			var change node.Change
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&change); err != nil {
				http.Error(w, "set: body must be JSON {\"talosVersion\", \"schematic\", \"configPatch\"}: "+err.Error(), http.StatusBadRequest)
				return
			}
			if err := n.Set(r.Context(), change); err != nil {
				code := http.StatusInternalServerError
				if errors.Is(err, node.ErrBadChange) {
					code = http.StatusBadRequest
				}
				http.Error(w, "set: "+err.Error(), code)
				return
			}
		case "fault":
			var body fault
			if err := decodeStrict(w, r, &body); err != nil {
				http.Error(w, faultUsage, http.StatusBadRequest)
				return
			}
			if err := body.apply(n); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		case "etcd":
			var body etcdFault
			if err := decodeStrict(w, r, &body); err != nil || body.Healthy == nil {
				http.Error(w, "etcd: body must be JSON {\"healthy\": true|false}", http.StatusBadRequest)
				return
			}
			n.SetEtcdHealthy(*body.Healthy)
		default:
			http.Error(w, "action must be stop, start, set, fault or etcd", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
