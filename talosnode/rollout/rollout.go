// Package rollout brings running Talos nodes to what the stack declares, one node at a time: the
// machine config a node does not carry yet, then the installer image (release and schematic) it
// does not run, each behind health gates, with an etcd snapshot before every control plane.
//
// A change of the Kubernetes images goes first, component-major as `talosctl upgrade-k8s` makes
// it (k8supgrade.go), so no kubelet ever runs newer than an API server.
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

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
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
	// New is a node this run creates: its own config apply installs it. A new worker is left
	// alone; a new control plane is awaited (it answers over mutual TLS once installed) and is then
	// an etcd member like the others.
	New bool
	// Leaving is a recorded node the stack no longer declares: the rollout takes it out of the
	// cluster before any other change (removal.go). Replaced: with Leaving, the machine at the
	// address recorded for a node the stack now declares at another address under the same name;
	// its etcd member and the machine go, the Node name stays with the new machine.
	Leaving, Replaced bool
	// step marks a turn of an upgrade path: only the release moves (to TalosVersion, if the node
	// runs an older one); the config is the declared one only after the last step.
	step bool
}

// Options say how to reach the nodes and how careful to be.
type Options struct {
	// Credentials reach the nodes; Issuer, when set, is used instead: each call gets a certificate
	// it minted that is valid for a while yet, however long the rollout runs (Creds).
	Credentials node.Credentials
	Issuer      *node.Issuer
	// ApplyMode is the stack's apply mode for config changes (AUTO reboots only when Talos cannot
	// apply the change in place).
	ApplyMode machine.ApplyConfigurationRequest_Mode
	// RebootMode is how an upgrade reboots: DEFAULT (kexec) or POWERCYCLE (through the firmware).
	RebootMode machine.UpgradeRequest_RebootMode
	// MaxUnavailableWorkers is how many workers of one pool (PoolLabel) may be changed (and so be
	// down) at once; a labelled pool of several workers always keeps one up.
	MaxUnavailableWorkers int
	// HealthTimeout bounds each wait on one node: to answer, to reboot, to be healthy again.
	HealthTimeout time.Duration
	Snapshots     Snapshots
	// Log receives one line per step (may be nil).
	Log func(string)
	// Progress receives, while a wait on a node lasts, what it waits for, what the last attempt
	// saw and the time left, every few seconds (progress.Sink; its fields may be nil).
	Progress progress.Sink
	// Poll is how often a wait asks again; default 500ms.
	Poll time.Duration
	// Kubernetes makes the rollout wait, after each in-place change, until it has landed in the
	// cluster's Kubernetes API (inplace.go), and re-check the nodes done before each turn. It
	// needs a bootstrapped cluster whose control planes answer on :6443. With it, a config apply
	// that reboots the node is preceded by a cordon and a drain that honours PodDisruptionBudgets,
	// and followed by an uncordon (drain.go).
	Kubernetes bool
	// DrainTimeout bounds one node's drain; 0 means HealthTimeout.
	DrainTimeout time.Duration
	// UpgradePath are releases, oldest first, that every node running an older one is upgraded to
	// (the whole cluster, gated as any upgrade) before the declared release: the way across minors
	// Talos' installer allows only from a recent enough release (compatibility.UpgradeableFrom).
	UpgradePath []string
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
	// ManifestSync is the bootstrap-manifest sync at the end of a run (manifests.go).
	ManifestSync Phase = "manifest sync"
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
// failure; nodes not reached are not touched. New workers are left to their own install; new
// control planes are awaited and then treated as members.
func Run(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	if opts.Poll <= 0 {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.HealthTimeout <= 0 {
		return Result{}, errors.New("rollout: health timeout must be positive")
	}
	r := &runner{opts: opts}
	// The members the gates expect: the control planes already in the cluster and those leaving
	// it, each until it has left. A new control plane was installed by its own config apply, which
	// the rollout follows: it joined etcd as a learner, promoted once it caught up. Once promoted it
	// is a member the gates expect listed, started and healthy, and a node like the others; left
	// out, every gate would count one member too many, on every rerun.
	var declared, leaving []Node
	for _, n := range nodes {
		switch {
		case n.Leaving:
			leaving = append(leaving, n)
		default:
			declared = append(declared, n)
		}
		if n.ControlPlane && !n.New {
			r.members = append(r.members, n)
		}
	}
	declared, err := r.membership(ctx, declared, leaving)
	if err != nil {
		return r.result, err
	}
	controlPlanes, workers := Split(declared)
	for _, release := range opts.UpgradePath {
		r.log("upgrade path: every node on a release older than %s upgrades to it first", release)
		if err := r.pass(ctx, stepTo(controlPlanes, release), stepTo(workers, release)); err != nil {
			return r.result, err
		}
	}
	// A Kubernetes version change goes component-major before the final pass (k8supgrade.go);
	// the bootstrap manifests follow everything else (manifests.go).
	if err := r.kubernetesUpgrade(ctx, controlPlanes, workers); err != nil {
		return r.result, err
	}
	if err = r.pass(ctx, controlPlanes, workers); err == nil && opts.Kubernetes {
		err = r.syncManifests(ctx, declared)
	}
	return r.result, err
}

// pass converges the control planes one at a time, then the workers; a pass re-checks only the
// nodes done in it.
func (r *runner) pass(ctx context.Context, controlPlanes, workers []Node) error {
	r.mu.Lock()
	r.done = nil
	r.mu.Unlock()
	for _, n := range controlPlanes {
		if err := r.converge(ctx, n); err != nil {
			return err
		}
	}
	return r.workers(ctx, workers, max(r.opts.MaxUnavailableWorkers, 1))
}

// stepTo is the nodes' turns of one upgrade-path step: the release and its installer (the
// declared installer's repository with the step's tag, so the same schematic).
func stepTo(nodes []Node, release string) []Node {
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		n.TalosVersion, n.InstallerImage, n.step = release, retag(n.InstallerImage, release), true
		out[i] = n
	}
	return out
}

// retag replaces an image reference's tag (the part after the last ':' of its last path element).
func retag(image, tag string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image + ":" + tag
}

// Older says whether Talos release a (v1.11.5) is older than b; false when either is not one.
func Older(a, b string) bool {
	va, errA := semver.ParseTolerant(a)
	vb, errB := semver.ParseTolerant(b)
	return errA == nil && errB == nil && va.LT(vb)
}

// Split is the order of a rollout: the control planes in the stack's order, then the workers;
// nodes being created or taken out are in neither.
func Split(nodes []Node) (controlPlanes, workers []Node) {
	for _, n := range nodes {
		switch {
		case n.New, n.Leaving:
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
	// joining are new control planes whose etcd membership is not awaited yet.
	joining []Node
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

// PoolLabel is the node label that groups workers into pools: maxUnavailableWorkers counts per
// pool, and a pool of several workers always keeps one up.
const PoolLabel = "node.kubernetes.io/pool"

// poolOf is the pool a node's declared config puts it in ("" without the label).
func poolOf(n Node) string {
	cfg, err := configloader.NewFromBytes(n.Config)
	if err != nil || cfg.Machine() == nil || cfg.K8sNodeConfig() == nil {
		return ""
	}
	return cfg.K8sNodeConfig().Labels()[PoolLabel]
}

// workers converges the workers pool by pool, the pools side by side: in each, at most `limit`
// at once (and in a labelled pool of several workers, never all of them); a slot frees when a
// worker is back and healthy. Unlabelled workers are one pool. After a failure no further worker
// starts.
func (r *runner) workers(ctx context.Context, workers []Node, limit int) error {
	return r.workersWith(ctx, workers, limit, r.converge)
}

// workersWith is workers with another turn than converge.
func (r *runner) workersWith(ctx context.Context, workers []Node, limit int, turn func(context.Context, Node) error) error {
	var (
		order []string
		pools = map[string][]Node{}
	)
	for _, n := range workers {
		pool := poolOf(n)
		if _, ok := pools[pool]; !ok {
			order = append(order, pool)
		}
		pools[pool] = append(pools[pool], n)
	}
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
	for _, pool := range order {
		members := pools[pool]
		slots := limit
		if pool != "" && len(members) > 1 {
			slots = min(limit, len(members)-1)
		}
		if pool != "" {
			r.log("pool %s: %d workers, at most %d at once", pool, len(members), slots)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.pool(ctx, members, slots, turn, failed, func(err error) {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	if len(failures) == 0 && ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(failures...)
}

// pool converges one pool's workers through `limit` slots.
func (r *runner) pool(ctx context.Context, workers []Node, limit int, turn func(context.Context, Node) error, failed func() bool, fail func(error)) {
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
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
			if err := turn(ctx, n); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
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
	drift, err := Compare(n, declared.Hash, live, r.opts.ApplyMode)
	if err != nil {
		return &Error{Node: n.Target, Phase: PreCheck, Expected: "an applied config that decodes", Seen: redact.ErrorText(err)}
	}
	needConfig, needImage := drift.Config != nil, drift.Image
	if n.step {
		// Only the release moves, and only forward: a node already on it or past it waits for
		// the declared release's pass.
		needConfig, needImage = false, Older(live.TalosVersion, n.TalosVersion)
		if !needImage {
			r.log("%s: runs %s, not older than the upgrade-path step %s: nothing to do in this step", n.Target, live.TalosVersion, n.TalosVersion)
			return nil
		}
	}
	if !needConfig && !needImage {
		carries := "carries the declared config"
		if drift.Pending {
			carries = "has the declared config staged, active after its next reboot"
		}
		r.log("%s: runs %s and %s: nothing to do", n.Target, describeImage(live.TalosVersion, live.SchematicID), carries)
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
		path, err := r.opts.Snapshots.Take(ctx, n.Target, r.opts.Creds(), time.Now())
		if err != nil {
			return &Error{Node: n.Target, Phase: Snapshot, Expected: "a verified etcd snapshot on this machine", Seen: err.Error()}
		}
		r.log("%s: etcd snapshot %s", n.Target, path)
		r.record("", path)
	}
	if err := r.change(ctx, n, live, needConfig, needImage); err != nil {
		return err
	}

	after, err := r.waitHealthy(ctx, n, PostCheck)
	if err != nil {
		return err
	}
	if after.TalosVersion != n.TalosVersion || after.SchematicID != n.SchematicID {
		return &Error{Node: n.Target, Phase: PostCheck, Expected: describeImage(n.TalosVersion, n.SchematicID), Seen: describeImage(after.TalosVersion, after.SchematicID)}
	}
	got, err := Compare(n, declared.Hash, after, r.opts.ApplyMode)
	if n.step {
		got, err = Drift{}, nil // the declared config comes with the declared release
	}
	switch {
	case err != nil:
		return &Error{Node: n.Target, Phase: PostCheck, Expected: "the declared config (sha256 " + short(declared.Hash) + ")", Seen: redact.ErrorText(err)}
	case got.Config != nil:
		return &Error{Node: n.Target, Phase: PostCheck, Expected: "the declared config (sha256 " + short(declared.Hash) + ")", Seen: got.Seen}
	}
	if needConfig && got.Pending {
		// Staged: nothing runs differently until the node reboots.
		steps[0] = "config staged, active after the next reboot"
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

// change makes the node's changes in an order its running release accepts, with one reboot when
// both the config and the image change. A running Talos (1.10+) refuses, in every apply mode, a
// config whose Kubernetes version it does not support (RuntimeValidate), so a config for the new
// release is staged before the upgrade when the running release accepts it (the upgrade's reboot
// makes it active), and applied after the upgrade when it does not.
func (r *runner) change(ctx context.Context, n Node, live node.State, needConfig, needImage bool) error {
	switch {
	case needConfig && !needImage:
		return r.applyConfig(ctx, n, r.opts.ApplyMode)
	case needImage && !needConfig:
		return r.upgrade(ctx, n, live)
	}
	declared, err := configloader.NewFromBytes(n.Config)
	if err != nil {
		return &Error{Node: n.Target, Phase: PreCheck, Expected: "a machine config that loads", Seen: redact.ErrorText(err)}
	}
	if err := CheckKubernetes(declared, live.TalosVersion); err != nil {
		r.log("%s: the running %s would refuse the declared config (%s): upgrading first, then applying it", n.Target, live.TalosVersion, redact.ErrorText(err))
		if err := r.upgrade(ctx, n, live); err != nil {
			return err
		}
		return r.applyConfig(ctx, n, r.opts.ApplyMode)
	}
	if err := r.applyConfig(ctx, n, machine.ApplyConfigurationRequest_STAGED); err != nil {
		return err
	}
	r.log("%s: config staged; the upgrade's reboot makes it active", n.Target)
	return r.upgrade(ctx, n, live)
}

func short(hash string) string { return hash[:min(len(hash), 12)] }

// Drift is what a node lacks of its declaration.
type Drift struct {
	// Config is the node's config that is not the declared one, nil when it carries the declared
	// one; Seen says which it is and its hash.
	Config config.Provider
	Seen   string
	// Image is true when it does not run the declared release and schematic.
	Image bool
	// Pending is true in STAGED mode when the declared config is the one the node boots with next
	// but not yet the one it runs.
	Pending bool
}

// Compare judges a node by what it reports, against its declaration (declaredHash is the
// canonical sha256 of n.Config, redact's Hash). In STAGED mode the config that counts is the one
// the node boots with next (MachineConfig persistent): a staged config is not active before a
// reboot, so a rerun must not stage it again. In the other modes both the active config and the
// one it boots with next must be the declared one: a config staged by hand would replace the
// declared one at the next reboot.
func Compare(n Node, declaredHash string, live node.State, mode machine.ApplyConfigurationRequest_Mode) (Drift, error) {
	d := Drift{Image: live.TalosVersion != n.TalosVersion || live.SchematicID != n.SchematicID}
	active, err := redact.FromProvider(live.Config)
	if err != nil {
		return Drift{}, fmt.Errorf("applied config: %w", err)
	}
	persisted := active
	if live.Persisted != nil {
		if persisted, err = redact.FromProvider(live.Persisted); err != nil {
			return Drift{}, fmt.Errorf("persisted config: %w", err)
		}
	}
	switch {
	case persisted.Hash != declaredHash && persisted.Hash == active.Hash:
		d.Config, d.Seen = live.Config, "the applied config: sha256 "+short(active.Hash)
	case persisted.Hash != declaredHash:
		d.Config, d.Seen = live.Persisted, "the config it boots with next (MachineConfig persistent): sha256 "+short(persisted.Hash)
	case mode == machine.ApplyConfigurationRequest_STAGED:
		d.Pending = active.Hash != declaredHash
	case active.Hash != declaredHash:
		d.Config, d.Seen = live.Config, "the applied config: sha256 "+short(active.Hash)
	}
	return d, nil
}

// callLifetime is how long a minted certificate must still be valid when a call starts: a
// handshake is verified once, so a connection opened now may outlive it, but a dial must not.
const callLifetime = 15 * time.Minute

// Creds are the credentials of the next call: Credentials, or the Issuer's current ones.
func (o Options) Creds() node.Credentials {
	if o.Issuer == nil {
		return o.Credentials
	}
	return o.Issuer.Credentials(callLifetime)
}
