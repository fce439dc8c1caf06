package node

import (
	"crypto/sha256"
	stdx509 "crypto/x509"
	"encoding/pem"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	talosx509 "github.com/siderolabs/crypto/x509"
)

// Trust is what the nodes of one simulation reach beyond themselves. First trustd: control
// planes hold the machine CA key, workers only its certificate, so a worker's API certificate is
// signed with the key a control plane of the same cluster brought. Then, per cluster, etcd (is it
// bootstrapped, who holds a VIP) and the Kubernetes API server (the Node objects); see cluster.go.
// One Trust is shared by all nodes of a simulation, in the order they were made.
type Trust struct {
	mu  sync.Mutex
	cas map[[32]byte]*talosx509.CertificateAuthority

	// clusterMu serialises settle. It is taken before a node's mu, never while holding one.
	clusterMu  sync.Mutex
	nodes      []*Node
	apiServers map[string]*apiServer
	// nodeApply is the outcome of each machine's last node-apply sync: "" or the refusal.
	nodeApply map[*Node]string
	// controlPlane, when set, runs a real etcd and kube-apiserver per bootstrapped cluster
	// (realAPIs, by cluster key) instead of the in-memory apiServers; closed once Close ran.
	controlPlane *ControlPlane
	realAPIs     map[string]*realAPI
	// podRounds counts the kubelets' pod rounds (pods.go).
	podRounds atomic.Int64
	closed    bool
	// etcdLeaders is each cluster's etcd leader (member id), by cluster key.
	etcdLeaders map[string]uint64
	// etcdMembers is each bootstrapped cluster's etcd member list, by cluster key (members.go);
	// formerMembers keeps the address of each removed member id, for the timeline.
	etcdMembers   map[string][]etcdRecord
	formerMembers map[uint64]string
	// recoveries are the snapshots a cluster's next real etcd starts from (recover.go).
	recoveries map[string]*recovery
	// halting counts the control planes of lost clusters still stopping (Close waits for them).
	halting sync.WaitGroup
	// nodeMonitorGrace: how long a Node's kubelet may be silent before its Ready turns Unknown
	// (nodemonitor.go).
	nodeMonitorGrace time.Duration

	timelineMu sync.Mutex
	timeline   []TimelineEntry
	// installers resolves installer image references for Upgrade; nil refuses every image.
	installers InstallerRegistry
}

// NewTrust returns an empty trust registry.
func NewTrust() *Trust {
	return &Trust{
		cas:              map[[32]byte]*talosx509.CertificateAuthority{},
		apiServers:       map[string]*apiServer{},
		nodeApply:        map[*Node]string{},
		realAPIs:         map[string]*realAPI{},
		etcdLeaders:      map[string]uint64{},
		etcdMembers:      map[string][]etcdRecord{},
		formerMembers:    map[uint64]string{},
		recoveries:       map[string]*recovery{},
		nodeMonitorGrace: DefaultNodeMonitorGracePeriod,
	}
}

func (t *Trust) learn(ca *talosx509.CertificateAuthority) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cas[sha256.Sum256(ca.Crt.Raw)] = ca
}

func (t *Trust) signer(crt *stdx509.Certificate) (*talosx509.CertificateAuthority, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ca, ok := t.cas[sha256.Sum256(crt.Raw)]
	return ca, ok
}

var errNoCertificate = errors.New("no CERTIFICATE block")

func parseCertificate(pemBytes []byte) (*stdx509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errNoCertificate
	}
	return stdx509.ParseCertificate(block.Bytes)
}
