package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/blang/semver/v4"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/redact"
	"talos-cluster/talosnode/rollout"
)

// DefaultHealthTimeout bounds each wait on one node during a rollout when the stack sets none:
// a bare-metal reboot with a server's POST and an image pull fits in it.
const DefaultHealthTimeout = "15m"

// Rollout changes a running cluster's nodes one at a time when what they should run changes:
// their machine config, or their Talos release or schematic (an upgrade). One resource holds
// every node, so the engine's parallelism cannot change two at once. Creating it changes
// nothing: on a first up each node's own config apply installs it, in parallel.
type Rollout struct{}

// RolloutNode is one node as the stack declares it.
type RolloutNode struct {
	Name                 string `pulumi:"name"`
	Address              string `pulumi:"address"`
	Role                 string `pulumi:"role"`
	TalosVersion         string `pulumi:"talosVersion"`
	SchematicID          string `pulumi:"schematicId"`
	InstallerImage       string `pulumi:"installerImage"`
	MachineConfiguration string `pulumi:"machineConfiguration" provider:"secret"`
}

// RolloutArgs is the cluster's nodes in the stack's order and how carefully to change them.
type RolloutArgs struct {
	ClientConfiguration   ClientConfiguration `pulumi:"clientConfiguration" provider:"secret"`
	Nodes                 []RolloutNode       `pulumi:"nodes"`
	ApplyMode             string              `pulumi:"applyMode,optional"`
	MaxUnavailableWorkers int                 `pulumi:"maxUnavailableWorkers,optional"`
	HealthTimeout         string              `pulumi:"healthTimeout,optional"`
	RebootMode            string              `pulumi:"rebootMode,optional"`
	KubernetesChecks      *bool               `pulumi:"kubernetesChecks,optional"`
	DrainTimeout          string              `pulumi:"drainTimeout,optional"`
	UpgradePath           []string            `pulumi:"upgradePath,optional"`
	SnapshotDir           string              `pulumi:"snapshotDir"`
	SnapshotPrefix        string              `pulumi:"snapshotPrefix"`
	// MachineSecrets, when given, is what the provider mints its own client certificates from;
	// kept among the inputs only (never in the outputs) and left out of every diff.
	MachineSecrets *MachineSecrets `pulumi:"machineSecrets,optional" provider:"secret"`
}

// RolloutState is the declaration and what the last rollout did.
type RolloutState struct {
	RolloutArgs
	// Optional: a create changes nothing and leaves them empty, and infer refuses a state that
	// lacks a required output.
	Changes   []string `pulumi:"changes,optional"`
	Snapshots []string `pulumi:"snapshots,optional"`
}

// Annotate describes the resource.
func (r *Rollout) Annotate(a infer.Annotator) {
	a.Describe(r, "Brings a running cluster's nodes to what the stack declares, one node at a time: the machine config (in the stack's apply mode), "+
		"then the installer image (Talos release and schematic) through Talos' Upgrade API. Control planes go first, one at a time in the stack's order, "+
		"each after an etcd snapshot and between etcd health gates; then workers, at most maxUnavailableWorkers at once. "+
		"Each node is judged by what it reports, so a rerun after a failure skips finished nodes; in staged mode by the config it boots with next. "+
		"A refresh reads every node and records what differs from the declaration, so the next update brings a node changed by hand back through the same gates. Creating it changes no node.")
}

// Annotate describes a node.
func (n *RolloutNode) Annotate(a infer.Annotator) {
	a.Describe(&n.Name, "The node's name in the stack (its hostname).")
	a.Describe(&n.Address, "The node's address (Talos API on port 50000 unless host:port is given).")
	a.Describe(&n.Role, "controlplane or worker.")
	a.Describe(&n.TalosVersion, "The Talos release the node should run, e.g. v1.11.6.")
	a.Describe(&n.SchematicID, "The Image Factory schematic the node should boot.")
	a.Describe(&n.InstallerImage, "The factory installer image of that release and schematic, passed to Talos' Upgrade.")
	a.Describe(&n.MachineConfiguration, "The full machine configuration the node should carry (YAML).")
}

// Annotate describes the inputs.
func (a *RolloutArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.ClientConfiguration, "Credentials for mutual TLS with the nodes (os:admin; unused when machineSecrets is given).")
	an.Describe(&a.Nodes, "Every node, in the stack's order: control planes are changed in this order.")
	an.Describe(&a.ApplyMode, "How config changes are applied: auto (reboot only when Talos cannot apply in place), no_reboot, reboot or staged.")
	an.SetDefault(&a.ApplyMode, "auto")
	an.Describe(&a.MaxUnavailableWorkers, "How many workers of one pool (node label node.kubernetes.io/pool; unlabelled workers are one pool) may be changed (and be down) at once; "+
		"a labelled pool of several workers always keeps one up. Default 1.")
	an.SetDefault(&a.MaxUnavailableWorkers, 1)
	an.Describe(&a.HealthTimeout, "How long each wait on one node may take: to answer, reboot and be healthy again (a Go duration). Default 15m.")
	an.SetDefault(&a.HealthTimeout, DefaultHealthTimeout)
	an.Describe(&a.RebootMode, "How an upgrade reboots: default (kexec) or powercycle (through the firmware).")
	an.SetDefault(&a.RebootMode, "default")
	an.Describe(&a.KubernetesChecks, "Whether the rollout works through the cluster's Kubernetes API, with an admin kubeconfig it fetches from a control plane "+
		"(as talosctl upgrade-k8s does); the machine running the update must reach every control plane's :6443. After a change Talos applies in place, "+
		"it waits until the static pods run their new config version and are Ready, the Node reports the declared kubelet and is Ready, and every control plane's "+
		"/readyz answers, and before each node's turn it checks the nodes done so far again; before a config apply that reboots a node, it cordons the Node and "+
		"drains it through the Eviction API (PodDisruptionBudgets honoured), and uncordons it after. Default true; false leaves Kubernetes alone "+
		"(Talos' own health and etcd gates only).")
	an.SetDefault(&a.KubernetesChecks, true)
	an.Describe(&a.DrainTimeout, "How long the drain of one node before a config apply that reboots it may take (a Go duration); when it passes, the Node is "+
		"uncordoned, nothing is applied and the rollout stops naming the pods left and the budgets that blocked. Default: healthTimeout.")
	an.Describe(&a.UpgradePath, "Talos releases, oldest first, that every node on an older release is upgraded to before the declared one: the whole cluster "+
		"goes to each in turn (control planes one at a time, then workers), gated as any upgrade, with the declared config applied only with the declared release. "+
		"The way across minors when the declared release does not install over the running one (e.g. [v1.13.9] from v1.11.5 to v1.14.1); "+
		"the pre-flight refuses a way Talos' installer would refuse.")
	an.Describe(&a.SnapshotDir, "Where etcd snapshots are written on the machine that runs the update (absolute path).")
	an.Describe(&a.SnapshotPrefix, "What snapshot file names start with (the stack): <prefix>-<node>-<time>.db.")
	an.Describe(&a.MachineSecrets, machineSecretsDescription+" A rollout that runs for hours gets a fresh certificate whenever the last one has less than 15 minutes left.")
}

// Annotate describes the outputs.
func (s *RolloutState) Annotate(a infer.Annotator) {
	a.Describe(&s.Changes, "What the last update changed, one line per node.")
	a.Describe(&s.Snapshots, "The etcd snapshots the last update wrote.")
}

// Check validates the declaration; every problem is reported at once.
func (Rollout) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[RolloutArgs], error) {
	args, failures, err := infer.DefaultCheck[RolloutArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[RolloutArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)
	if _, err := rollout.ApplyMode(args.ApplyMode); err != nil {
		fail("applyMode", err.Error())
	}
	if _, err := rollout.RebootMode(args.RebootMode); err != nil {
		fail("rebootMode", err.Error())
	}
	if args.MaxUnavailableWorkers < 1 {
		fail("maxUnavailableWorkers", fmt.Sprintf("%d: at least 1 worker must be allowed to change at a time", args.MaxUnavailableWorkers))
	}
	checkDuration(req.NewInputs, "healthTimeout", args.HealthTimeout, "15m", fail)
	if args.DrainTimeout != "" {
		checkDuration(req.NewInputs, "drainTimeout", args.DrainTimeout, "10m (or leave it out: the drain then gets healthTimeout)", fail)
	}
	for i, release := range args.UpgradePath {
		if _, err := semver.ParseTolerant(release); err != nil || !strings.HasPrefix(release, "v") {
			fail("upgradePath", fmt.Sprintf("[%d] %q is not a Talos release such as v1.13.9", i, release))
		} else if i > 0 && !rollout.Older(args.UpgradePath[i-1], release) {
			fail("upgradePath", fmt.Sprintf("[%d] %s does not come after %s: list the releases oldest first", i, release, args.UpgradePath[i-1]))
		}
	}
	if dir, ok := req.NewInputs.GetOk("snapshotDir"); (!ok || !dir.IsComputed()) && !filepath.IsAbs(args.SnapshotDir) {
		fail("snapshotDir", fmt.Sprintf("%q is not an absolute path", args.SnapshotDir))
	}
	if cps, upgraded := upgradedControlPlanes(req.OldInputs, args.Nodes); cps == 2 && len(upgraded) > 0 {
		// Talos refuses the upgrade of a control plane of a two-member etcd (ValidateForUpgrade,
		// internal/pkg/etcd/etcd.go): one member down loses quorum. Only force would pass it.
		fail("nodes", fmt.Sprintf("the release or schematic of control planes %s changes, and the stack has exactly 2 control planes: Talos refuses "+
			"with \"etcd member count(2) is insufficient to maintain quorum if upgrade commences\"; add a third control plane first (or go down to one)",
			strings.Join(upgraded, ", ")))
	}
	for _, refusal := range rollout.CheckMembers(recordedNodes(req.OldInputs), rolloutNodes(args.Nodes)) {
		fail(refusal.Key, refusal.Reason)
	}
	checkMachineSecrets(req.NewInputs, args.MachineSecrets, fail)
	seen := map[string]bool{}
	for i, n := range args.Nodes {
		if n.Role != "controlplane" && n.Role != "worker" {
			fail(fmt.Sprintf("nodes[%d].role", i), fmt.Sprintf("%q is not controlplane or worker", n.Role))
		}
		if seen[n.Name] {
			fail(fmt.Sprintf("nodes[%d].name", i), fmt.Sprintf("%q is listed twice", n.Name))
		}
		seen[n.Name] = true
	}
	return infer.CheckResponse[RolloutArgs]{Inputs: args, Failures: failures}, nil
}

// Create records the declaration. The nodes are being installed by their own config applies;
// holding the first up to one node at a time would only make it slower.
func (Rollout) Create(_ context.Context, req infer.CreateRequest[RolloutArgs]) (infer.CreateResponse[RolloutState], error) {
	state := RolloutState{RolloutArgs: req.Inputs}
	state.MachineSecrets = nil
	return infer.CreateResponse[RolloutState]{ID: req.Name, Output: state}, nil
}

// Read is a refresh: every recorded node is read and judged as Update judges it
// (rollout.Compare, in the recorded apply mode). Where a node differs, what it runs replaces the
// recorded declaration: its release and schematic, and the config it carries when that is not the
// declared one (as the node serves it, a secret like the declared one). The next diff against the
// program then names the node, and the update brings it back through the same gates; a node that
// runs its declaration is recorded as it was, so a refresh of a converged cluster changes nothing.
// A node that does not answer is asked once (its NodeState waits for it and fails the refresh
// naming it) and recorded as it was, with a warning; an answer that is an error fails the refresh.
// An etcd member no recorded control plane accounts for is recorded as a control plane the stack
// no longer declares (strayMembers), so the diff names it and the update takes it out.
func (Rollout) Read(ctx context.Context, req infer.ReadRequest[RolloutArgs, RolloutState]) (infer.ReadResponse[RolloutArgs, RolloutState], error) {
	recorded := req.State.RolloutArgs
	// The machine secrets are kept among the inputs only.
	recorded.MachineSecrets = req.Inputs.MachineSecrets
	opts, err := rolloutOptions(recorded)
	if err != nil {
		return infer.ReadResponse[RolloutArgs, RolloutState]{}, fmt.Errorf("refresh %s: %w", req.ID, err)
	}
	reader, useReader, err := readCredentials(recorded.MachineSecrets)
	if err != nil {
		return infer.ReadResponse[RolloutArgs, RolloutState]{}, fmt.Errorf("refresh %s: %w", req.ID, err)
	}
	if useReader {
		opts.Credentials, opts.Issuer = reader, nil
	}
	logger := p.GetLogger(ctx)
	// What a previous refresh recorded for etcd members no node accounts for is read again below.
	nodes := slices.DeleteFunc(slices.Clone(req.State.Nodes), isStrayMember)
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	slots := make(chan struct{}, refreshParallelism)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = readLive(ctx, &nodes[i], opts, useReader, func(msg string) { logger.Warning(msg) })
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return infer.ReadResponse[RolloutArgs, RolloutState]{}, err
	}
	nodes = append(nodes, strayMembers(ctx, nodes, opts, func(msg string) { logger.Warning(msg) })...)
	state, inputs := req.State, req.Inputs
	state.MachineSecrets = nil
	state.Nodes, inputs.Nodes = nodes, slices.Clone(nodes)
	return infer.ReadResponse[RolloutArgs, RolloutState]{ID: req.ID, Inputs: inputs, State: state}, nil
}

// strayMembers are the voting etcd members no recorded control plane accounts for, as a control
// plane the stack no longer declares (the name the member reports, the address of its peer URL,
// nothing else): the diff against the program then names each, the preview says what the update
// does to it, and the update takes it out as a removed control plane (its member removed by id
// when its machine does not answer; it leaves etcd and is reset when it does). A member some
// machine left behind under a declared node's name (a replaced machine's) is at another address:
// the update removes it as a replaced machine's, the Node left to the declared one. Asked of the
// first recorded control plane that answers; when none does, nothing is added, with a warning.
func strayMembers(ctx context.Context, nodes []RolloutNode, opts rollout.Options, warn func(string)) []RolloutNode {
	var controlPlanes []rollout.Node
	for _, n := range rolloutNodes(nodes) {
		if n.ControlPlane {
			controlPlanes = append(controlPlanes, n)
		}
	}
	if len(controlPlanes) == 0 {
		return nil
	}
	callCtx, cancel := context.WithTimeout(ctx, min(opts.HealthTimeout, refreshAttempt))
	defer cancel()
	list, err := rollout.MemberList(callCtx, controlPlanes, opts.Credentials)
	if err != nil {
		warn(fmt.Sprintf("refresh: the etcd member list: no control plane answered (%s): members not compared with the control planes", err))
		return nil
	}
	// A member is matched by its peer URL's address, else its name: with a control plane recorded
	// by a DNS name whose hostname differs, its own member would look unaccounted for.
	byName := slices.ContainsFunc(controlPlanes, func(n rollout.Node) bool {
		h, _, err := net.SplitHostPort(n.Target.Address)
		if err != nil {
			h = n.Target.Address
		}
		return net.ParseIP(h) == nil
	})
	var out []RolloutNode
	for _, m := range rollout.Unaccounted(list, controlPlanes) {
		name, address := m.GetHostname(), rollout.MemberHost(m)
		if name == "" {
			name = fmt.Sprintf("etcd-member-%016x", m.GetId())
		}
		if byName {
			warn(fmt.Sprintf("refresh: etcd member %016x (%s at %s) is no declared control plane's by name, and some are declared by a DNS name: not recorded; "+
				"if it is no machine of the stack, remove it by hand (talosctl etcd remove-member %016x)", m.GetId(), name, address, m.GetId()))
			continue
		}
		if address == "" {
			warn(fmt.Sprintf("refresh: etcd member %016x (%s) is no declared control plane's and has no peer URL: remove it by hand (talosctl etcd remove-member %016x)", m.GetId(), name, m.GetId()))
			continue
		}
		warn(fmt.Sprintf("refresh: etcd member %016x (%s at %s) is no declared control plane's: recorded as a control plane the stack no longer declares, "+
			"so the next update takes it out of etcd (and resets its machine if it answers); declare it under that name and address to keep it", m.GetId(), name, address))
		out = append(out, RolloutNode{Name: name, Address: address, Role: "controlplane"})
	}
	return out
}

// isStrayMember is an entry strayMembers recorded: no release and no config.
func isStrayMember(n RolloutNode) bool {
	return n.Role == "controlplane" && n.TalosVersion == "" && n.MachineConfiguration == ""
}

// refreshParallelism is how many nodes a refresh reads at once; refreshAttempt bounds each read.
const (
	refreshParallelism = 8
	refreshAttempt     = 30 * time.Second
)

// readLive reads one node and writes what differs from its recorded declaration into it. A node
// that does not answer is left as recorded and reported to warn. With reader (opts.Credentials is
// the refresh credential of ReadTalosconfigEnv) a MachineConfig Talos refuses is not compared:
// the recorded config stays, and the release and schematic are judged.
func readLive(ctx context.Context, n *RolloutNode, opts rollout.Options, reader bool, warn func(string)) error {
	t := node.Target{Name: n.Name, Address: n.Address}
	declared, err := redact.FromYAML([]byte(n.MachineConfiguration))
	if err != nil {
		// The message must not quote the config: it is a secret.
		return fmt.Errorf("refresh %s: the recorded config: %s", t, redact.ErrorText(err))
	}
	callCtx, cancel := context.WithTimeout(ctx, min(opts.HealthTimeout, refreshAttempt))
	defer cancel()
	read := node.Read
	if reader {
		read = node.ReadAvailable
	}
	live, err := read(callCtx, t, opts.Creds())
	var rerr *node.Error
	switch {
	case errors.As(err, &rerr) && rerr.NotAnswering():
		warn(fmt.Sprintf("refresh %s: not answering over mutual TLS (%s: %s): recorded as it was; the next refresh reads it again", t, rerr.Phase, node.Describe(rerr.Err)))
		return nil
	case err != nil:
		return fmt.Errorf("refresh %w", err)
	}
	if live.ConfigDenied {
		warnConfigNotCompared(t, warn)
		n.TalosVersion, n.SchematicID = live.TalosVersion, live.SchematicID
		return nil
	}
	drift, err := rollout.Compare(rollout.Node{Target: t, TalosVersion: n.TalosVersion, SchematicID: n.SchematicID}, declared.Hash, live, opts.ApplyMode)
	if err != nil {
		return fmt.Errorf("refresh %s: %s", t, redact.ErrorText(err))
	}
	n.TalosVersion, n.SchematicID = live.TalosVersion, live.SchematicID
	if drift.Config != nil {
		data, err := drift.Config.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
		if err != nil {
			return fmt.Errorf("refresh %s: encode %s: %s", t, drift.Seen, redact.ErrorText(err))
		}
		n.MachineConfiguration = string(data)
	}
	return nil
}

// Update rolls the cluster to the new declaration. On failure the recorded declaration stays
// the old one, so the next up tries again; nodes that already run the target are skipped then.
func (Rollout) Update(ctx context.Context, req infer.UpdateRequest[RolloutArgs, RolloutState]) (infer.UpdateResponse[RolloutState], error) {
	state := RolloutState{RolloutArgs: req.Inputs}
	state.MachineSecrets = nil
	logger := p.GetLogger(ctx)
	log := func(line string) {
		logger.InfoStatus(line)
		logger.Info(line)
	}
	// A node is new when the last update did not record it, or recorded it at another address (a
	// machine that replaces it); the recorded nodes no longer declared, and the machines replaced,
	// leave the cluster before any other change.
	members := rollout.PlanMembers(rolloutNodes(req.State.Nodes), rolloutNodes(req.Inputs.Nodes))
	added := map[string]bool{}
	for _, n := range members.Added {
		added[n.Target.Name] = true
	}
	nodes := rolloutNodes(req.Inputs.Nodes)
	for i := range nodes {
		nodes[i].New = added[nodes[i].Target.Name]
	}
	leaving := members.Leaving()
	if req.DryRun {
		// The preview reads each node's running release: a config it would refuse fails here.
		reader, useReader, err := readCredentials(req.Inputs.MachineSecrets)
		if err != nil {
			return infer.UpdateResponse[RolloutState]{}, fmt.Errorf("pre-flight: %w", err)
		}
		issuer, err := issuerOf(req.Inputs.MachineSecrets)
		if err != nil {
			return infer.UpdateResponse[RolloutState]{}, fmt.Errorf("pre-flight: %w", err)
		}
		admin := !useReader && (issuer != nil || req.Inputs.ClientConfiguration.ClientKey != "")
		creds := credentials(req.Inputs.ClientConfiguration)
		if issuer != nil {
			creds = issuer.Credentials(node.ClockSkew)
		}
		if useReader || admin {
			// A preview only reads: with the refresh credential when one is given.
			if useReader {
				creds = reader
			}
			// With the Kubernetes checks on, a minor upgrade also runs go-kubernetes' removed-item
			// checks against the running cluster, as talosctl upgrade-k8s does before it starts.
			kubernetes := req.Inputs.KubernetesChecks == nil || *req.Inputs.KubernetesChecks
			if err := rollout.Preflight(ctx, nodes, rollout.Options{Credentials: creds, Log: log, UpgradePath: req.Inputs.UpgradePath, Kubernetes: kubernetes}); err != nil {
				return infer.UpdateResponse[RolloutState]{}, fmt.Errorf("pre-flight against the nodes' running releases: %w", err)
			}
		}
		lines := previewPlan(ctx, req.State.Nodes, req.Inputs, creds, admin)
		if len(lines) > 0 && len(req.Inputs.UpgradePath) > 0 {
			lines = append([]string{"upgrade path: every node on an older release goes to " + strings.Join(req.Inputs.UpgradePath, ", then ") +
				", the whole cluster each time, before the declared release"}, lines...)
		}
		if len(lines) > 0 {
			logger.Info("plan, in the rollout's order:\n  " + strings.Join(lines, "\n  "))
		}
		return infer.UpdateResponse[RolloutState]{Output: state}, nil
	}
	opts, err := rolloutOptions(req.Inputs)
	if err != nil {
		return infer.UpdateResponse[RolloutState]{}, err
	}
	opts.Log, opts.Progress = log, progressSink(ctx)
	if err := rollout.Preflight(ctx, nodes, opts); err != nil {
		return infer.UpdateResponse[RolloutState]{}, fmt.Errorf("pre-flight against the nodes' running releases, nothing was changed: %w", err)
	}
	result, err := rollout.Run(ctx, append(nodes, leaving...), opts)
	if err != nil {
		return infer.UpdateResponse[RolloutState]{}, fmt.Errorf("rollout stopped; nodes after this one were not touched, and a rerun continues here: %w", err)
	}
	state.Changes, state.Snapshots = result.Changes, result.Snapshots
	return infer.UpdateResponse[RolloutState]{Output: state}, nil
}

// Delete leaves the nodes as they are.
func (Rollout) Delete(context.Context, infer.DeleteRequest[RolloutState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

// previewPlan is the plan a preview logs. With the admin credential (not a refresh's os:reader)
// Talos is asked, with a dry run, whether a node's config change reboots it.
func previewPlan(ctx context.Context, recorded []RolloutNode, declared RolloutArgs, creds node.Credentials, admin bool) []string {
	mode, err := rollout.ApplyMode(declared.ApplyMode)
	if err != nil {
		mode = machine.ApplyConfigurationRequest_AUTO
	}
	var ask func(context.Context, RolloutNode) (machine.ApplyConfigurationRequest_Mode, error)
	if admin {
		ask = func(ctx context.Context, n RolloutNode) (machine.ApplyConfigurationRequest_Mode, error) {
			answer, err := rollout.DryRun(ctx, rollout.Node{Target: node.Target{Name: n.Name, Address: n.Address}, Config: []byte(n.MachineConfiguration)}, creds, mode)
			if err != nil {
				return 0, errors.New(node.Describe(err))
			}
			return answer, nil
		}
	}
	lines := planLines(ctx, recorded, declared.Nodes, mode, ask)
	if _, to := kubernetesChange(recorded, declared.Nodes); to != "" {
		// Each node's running release, read only when Kubernetes changes (plan_kubernetes.go).
		lines = append(lines, kubernetesPlan(recorded, declared.Nodes, declared.MaxUnavailableWorkers, runningReleases(ctx, recorded, creds))...)
		if admin {
			lines = append(lines, manifestPlan(ctx, recorded, declared.Nodes, creds))
		}
	}
	return lines
}

// manifestPlan says which bootstrap objects the up's manifest sync changes: those the control
// planes render differently from the cluster now (a server-side dry run, rollout.DiffManifests),
// and kube-proxy's DaemonSet, which follows the declared proxy image only once the configs carry
// it. Best effort: a preview does not fail for it.
func manifestPlan(ctx context.Context, recorded, declared []RolloutNode, creds node.Credentials) string {
	head := "bootstrap manifests (synced after the upgrade, nothing deleted): "
	var cp *RolloutNode
	for i := range recorded {
		if recorded[i].Role == "controlplane" && !isStrayMember(recorded[i]) {
			cp = &recorded[i]
			break
		}
	}
	var changes []string
	for _, n := range declared {
		if _, cfg := kubernetesOf(n.MachineConfiguration); n.Role == "controlplane" && cfg != nil && cfg.K8sProxyConfig() != nil && cfg.K8sProxyConfig().Enabled() {
			changes = append(changes, "update apps/v1 DaemonSet kube-system/kube-proxy to "+cfg.K8sProxyConfig().Image())
			break
		}
	}
	if cp == nil {
		return head + strings.Join(append(changes, "the rest not read (no control plane recorded)"), "; ")
	}
	target := node.Target{Name: cp.Name, Address: cp.Address}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	diff, err := func() ([]string, error) {
		c, err := node.Dial(ctx, target, creds)
		if err != nil {
			return nil, err
		}
		defer c.Close() //nolint:errcheck
		kubeconfig, err := c.Kubeconfig(ctx)
		if err != nil {
			return nil, err
		}
		return rollout.DiffManifests(ctx, target, creds, kubeconfig, cp.TalosVersion)
	}()
	switch {
	case err != nil:
		changes = append(changes, "the rest not read ("+node.Describe(err)+")")
	default:
		for _, d := range diff {
			if !strings.Contains(d, "DaemonSet kube-system/kube-proxy") || len(changes) == 0 {
				changes = append(changes, d)
			}
		}
	}
	if len(changes) == 0 {
		return head + "none differ"
	}
	return head + strings.Join(changes, "; ")
}

// rolloutNodes are the stack's nodes as the rollout takes them.
func rolloutNodes(nodes []RolloutNode) []rollout.Node {
	out := make([]rollout.Node, len(nodes))
	for i, n := range nodes {
		out[i] = rollout.Node{
			Target:         node.Target{Name: n.Name, Address: n.Address},
			ControlPlane:   n.Role == "controlplane",
			TalosVersion:   n.TalosVersion,
			SchematicID:    n.SchematicID,
			InstallerImage: n.InstallerImage,
			Config:         []byte(n.MachineConfiguration),
		}
	}
	return out
}

// recordedNodes are the names, addresses and roles of the nodes in the previous inputs (none on
// a create).
func recordedNodes(old property.Map) []rollout.Node {
	var out []rollout.Node
	if list := old.Get("nodes"); list.IsArray() {
		for _, v := range list.AsArray().All {
			if !v.IsMap() {
				continue
			}
			m := v.AsMap()
			str := func(k string) string {
				if x := m.Get(k); x.IsString() {
					return x.AsString()
				}
				return ""
			}
			out = append(out, rollout.Node{Target: node.Target{Name: str("name"), Address: str("address")}, ControlPlane: str("role") == "controlplane"})
		}
	}
	return out
}

func rolloutOptions(a RolloutArgs) (rollout.Options, error) {
	apply, err := rollout.ApplyMode(a.ApplyMode)
	if err != nil {
		return rollout.Options{}, err
	}
	reboot, err := rollout.RebootMode(a.RebootMode)
	if err != nil {
		return rollout.Options{}, err
	}
	timeout, err := positiveDuration("healthTimeout", a.HealthTimeout)
	if err != nil {
		return rollout.Options{}, err
	}
	var drain time.Duration
	if a.DrainTimeout != "" {
		if drain, err = positiveDuration("drainTimeout", a.DrainTimeout); err != nil {
			return rollout.Options{}, err
		}
	}
	issuer, err := issuerOf(a.MachineSecrets)
	if err != nil {
		return rollout.Options{}, err
	}
	return rollout.Options{
		Credentials:           credentials(a.ClientConfiguration),
		Issuer:                issuer,
		ApplyMode:             apply,
		RebootMode:            reboot,
		MaxUnavailableWorkers: a.MaxUnavailableWorkers,
		HealthTimeout:         timeout,
		Snapshots:             rollout.Snapshots{Dir: a.SnapshotDir, Prefix: a.SnapshotPrefix},
		// Absent (a state recorded before the input existed) is the default: on.
		Kubernetes:   a.KubernetesChecks == nil || *a.KubernetesChecks,
		DrainTimeout: drain,
		UpgradePath:  a.UpgradePath,
	}, nil
}

// upgradedControlPlanes counts the declared control planes and names those whose release or
// schematic differs from the previous inputs (none on a create).
func upgradedControlPlanes(old property.Map, nodes []RolloutNode) (count int, upgraded []string) {
	before := map[string][2]string{}
	if list := old.Get("nodes"); list.IsArray() {
		for _, v := range list.AsArray().All {
			if !v.IsMap() {
				continue
			}
			m := v.AsMap()
			str := func(k string) string {
				if x := m.Get(k); x.IsString() {
					return x.AsString()
				}
				return ""
			}
			before[str("name")] = [2]string{str("talosVersion"), str("schematicId")}
		}
	}
	for _, n := range nodes {
		if n.Role != "controlplane" {
			continue
		}
		count++
		// An unknown release or schematic (preview) reads as "": judged once it is known.
		if was, ok := before[n.Name]; ok && n.TalosVersion != "" && n.SchematicID != "" && was != [2]string{n.TalosVersion, n.SchematicID} {
			upgraded = append(upgraded, n.Name)
		}
	}
	return count, upgraded
}
