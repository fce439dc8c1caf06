// Package rollout brings running Talos nodes to what the stack declares, one node at a time: the
// machine config a node does not carry yet, then the installer image (release and schematic) it
// does not run, each behind health gates, with an etcd snapshot before every control plane.
//
// Decisions are made from what each node reports, never from what a previous run recorded, so a
// rerun after any failure skips the nodes that are done and continues with the first that is not.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/redact"
)

// Node is one node and what it should run.
type Node struct {
	Target       node.Target
	ControlPlane bool
	// TalosVersion is the release the node should run, with its leading v (v1.11.6).
	TalosVersion string
	// SchematicID is the Image Factory schematic the node should boot.
	SchematicID string
	// InstallerImage is the factory installer of that release and schematic.
	InstallerImage string
	// Config is the full machine config (YAML) the node should carry.
	Config []byte
	// New is a node this run creates: its own config apply installs it, so the rollout leaves it
	// alone and does not count it among the etcd members it expects.
	New bool
}

// Options say how to reach the nodes and how careful to be.
type Options struct {
	Credentials node.Credentials
	// ApplyMode is the stack's apply mode for config changes (AUTO reboots only when Talos cannot
	// apply the change in place).
	ApplyMode machine.ApplyConfigurationRequest_Mode
	// RebootMode is how an upgrade reboots: DEFAULT (kexec) or POWERCYCLE (through the firmware).
	RebootMode machine.UpgradeRequest_RebootMode
	// MaxUnavailableWorkers is how many workers may be changed (and so be down) at once.
	MaxUnavailableWorkers int
	// HealthTimeout bounds each wait on one node: to answer, to reboot, to be healthy again.
	HealthTimeout time.Duration
	Snapshots     Snapshots
	// Log receives one line per step (may be nil).
	Log func(string)
	// Poll is how often a wait asks again; default 500ms.
	Poll time.Duration
	// Kubernetes makes the rollout wait, after each in-place change, until it has landed in the
	// cluster's Kubernetes API (inplace.go), and re-check the nodes done before each turn. It
	// needs a bootstrapped cluster whose control planes answer on :6443.
	Kubernetes bool
}

// Phase names the step a node was in when a rollout stopped.
type Phase string

// The phases of a node's turn, in order.
const (
	PreCheck    Phase = "pre-check"
	Snapshot    Phase = "snapshot"
	ConfigApply Phase = "config apply"
	UpgradeCall Phase = "upgrade call"
	Reboot      Phase = "reboot"
	PostCheck   Phase = "post-check"
)

// Error stops a rollout: which node, in which phase, what was expected and what was seen.
type Error struct {
	Node     node.Target
	Phase    Phase
	Expected string
	Seen     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: expected %s; seen %s", e.Node, e.Phase, e.Expected, e.Seen)
}

// Result is what a rollout did.
type Result struct {
	// Changes has one line per node that was changed, in the order they finished.
	Changes []string
	// Snapshots are the files written, in order.
	Snapshots []string
}

// Run changes every node that differs from its declaration: control planes one at a time in
// the given order, then workers, at most MaxUnavailableWorkers at once. It stops at the first
// failure; nodes not reached are not touched. Nodes marked New are left to their own install.
func Run(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	if opts.Poll <= 0 {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.HealthTimeout <= 0 {
		return Result{}, errors.New("rollout: health timeout must be positive")
	}
	r := &runner{opts: opts}
	controlPlanes, workers := Split(nodes)
	for _, n := range controlPlanes {
		r.members = append(r.members, n)
	}
	for _, n := range controlPlanes {
		if err := r.converge(ctx, n); err != nil {
			return r.result, err
		}
	}
	err := r.workers(ctx, workers, max(opts.MaxUnavailableWorkers, 1))
	return r.result, err
}

// Split is the order of a rollout: the control planes in the stack's order, then the workers;
// nodes being created are in neither.
func Split(nodes []Node) (controlPlanes, workers []Node) {
	for _, n := range nodes {
		switch {
		case n.New:
		case n.ControlPlane:
			controlPlanes = append(controlPlanes, n)
		default:
			workers = append(workers, n)
		}
	}
	return controlPlanes, workers
}

type runner struct {
	opts Options
	// members are the control planes already in the cluster: the etcd members the gates expect.
	members []Node
	mu      sync.Mutex
	result  Result
	// done are the nodes whose turn ended, for the re-check before each turn.
	done       []Node
	kubeMu     sync.Mutex
	kubeClient *kube.Client
}

func (r *runner) log(format string, args ...any) {
	if r.opts.Log != nil {
		r.opts.Log(fmt.Sprintf(format, args...))
	}
}

func (r *runner) record(change, snapshot string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if change != "" {
		r.result.Changes = append(r.result.Changes, change)
	}
	if snapshot != "" {
		r.result.Snapshots = append(r.result.Snapshots, snapshot)
	}
}

// workers converges the workers through a pool of `limit` slots: a slot frees when a worker is
// back and healthy; after a failure no further worker starts.
func (r *runner) workers(ctx context.Context, workers []Node, limit int) error {
	slots := make(chan struct{}, limit)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failures) > 0
	}
	for _, n := range workers {
		slots <- struct{}{}
		if failed() || ctx.Err() != nil {
			<-slots
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := r.converge(ctx, n); err != nil {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) == 0 && ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(failures...)
}

func describeImage(version, schematic string) string {
	if schematic == "" {
		return version + " (no factory schematic)"
	}
	return fmt.Sprintf("%s with schematic %s", version, schematic)
}

// converge gives one node its turn: read, gate, snapshot, config, upgrade, gate.
func (r *runner) converge(ctx context.Context, n Node) error {
	declared, err := redact.FromYAML(n.Config)
	if err != nil {
		return &Error{Node: n.Target, Phase: PreCheck, Expected: "a machine config that decodes", Seen: redact.ErrorText(err)}
	}
	live, err := r.waitHealthy(ctx, n, PreCheck)
	if err != nil {
		return err
	}
	liveConfig, err := redact.FromProvider(live.Config)
	if err != nil {
		return &Error{Node: n.Target, Phase: PreCheck, Expected: "an applied config that decodes", Seen: redact.ErrorText(err)}
	}
	needConfig := liveConfig.Hash != declared.Hash
	needImage := live.TalosVersion != n.TalosVersion || live.SchematicID != n.SchematicID
	if !needConfig && !needImage {
		r.log("%s: runs %s and carries the declared config: nothing to do", n.Target, describeImage(live.TalosVersion, live.SchematicID))
		return nil
	}

	var steps []string
	if needConfig {
		steps = append(steps, "config")
	}
	if needImage {
		steps = append(steps, fmt.Sprintf("%s -> %s", describeImage(live.TalosVersion, live.SchematicID), describeImage(n.TalosVersion, n.SchematicID)))
	}
	r.log("%s: its turn: %s", n.Target, strings.Join(steps, ", "))
	if err := r.recheckDone(ctx, n); err != nil {
		return err
	}
	if n.ControlPlane {
		if err := r.waitEtcd(ctx, n, PreCheck); err != nil {
			return err
		}
		path, err := r.opts.Snapshots.Take(ctx, n.Target, r.opts.Credentials, time.Now())
		if err != nil {
			return &Error{Node: n.Target, Phase: Snapshot, Expected: "a verified etcd snapshot on this machine", Seen: err.Error()}
		}
		r.log("%s: etcd snapshot %s", n.Target, path)
		r.record("", path)
	}
	if needConfig {
		if err := r.applyConfig(ctx, n); err != nil {
			return err
		}
	}
	if needImage {
		if err := r.upgrade(ctx, n, live); err != nil {
			return err
		}
	}

	after, err := r.waitHealthy(ctx, n, PostCheck)
	if err != nil {
		return err
	}
	if after.TalosVersion != n.TalosVersion || after.SchematicID != n.SchematicID {
		return &Error{Node: n.Target, Phase: PostCheck, Expected: describeImage(n.TalosVersion, n.SchematicID), Seen: describeImage(after.TalosVersion, after.SchematicID)}
	}
	if r.opts.ApplyMode != machine.ApplyConfigurationRequest_STAGED {
		got, err := redact.FromProvider(after.Config)
		if err != nil || got.Hash != declared.Hash {
			return &Error{Node: n.Target, Phase: PostCheck, Expected: "the declared config (sha256 " + short(declared.Hash) + ")", Seen: "sha256 " + short(got.Hash)}
		}
	}
	if n.ControlPlane {
		if err := r.waitEtcd(ctx, n, PostCheck); err != nil {
			return err
		}
	}
	change := fmt.Sprintf("%s: %s", n.Target.Name, strings.Join(steps, ", "))
	r.log("%s: done, healthy", n.Target)
	r.record(change, "")
	r.mu.Lock()
	r.done = append(r.done, n)
	r.mu.Unlock()
	return nil
}

func short(hash string) string { return hash[:min(len(hash), 12)] }
