package provider

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/recovery"
)

// EtcdRecovery brings a cluster whose etcd was lost back from a snapshot, once: when every
// declared control plane's etcd is empty and waits for the bootstrap (their EPHEMERAL wiped),
// it uploads the snapshot to the bootstrap control plane and bootstraps etcd from it, as
// `talosctl bootstrap --recover-from` does. Anywhere else it changes nothing: on a cluster whose
// etcd runs it records that nothing was needed, and one that keeps etcd data on some control
// plane while etcd has no leader is refused, naming it.
type EtcdRecovery struct{}

// RecoveryNode is a control plane as the stack declares it.
type RecoveryNode struct {
	Name    string `pulumi:"name"`
	Address string `pulumi:"address"`
}

// EtcdRecoveryArgs is the snapshot and the control planes.
type EtcdRecoveryArgs struct {
	Snapshot            string              `pulumi:"snapshot"`
	SnapshotSha256      string              `pulumi:"snapshotSha256,optional"`
	ControlPlanes       []RecoveryNode      `pulumi:"controlPlanes"`
	BootstrapNode       string              `pulumi:"bootstrapNode"`
	ClientConfiguration ClientConfiguration `pulumi:"clientConfiguration" provider:"secret"`
	MachineSecrets      *MachineSecrets     `pulumi:"machineSecrets,optional" provider:"secret"`
	Timeout             string              `pulumi:"timeout,optional"`
}

// EtcdRecoveryState is the declaration and what the recovery did.
type EtcdRecoveryState struct {
	EtcdRecoveryArgs
	// Recovered is true when this resource restored etcd from the snapshot.
	Recovered bool   `pulumi:"recovered"`
	Revision  int    `pulumi:"revision"`
	Keys      int    `pulumi:"keys"`
	Outcome   string `pulumi:"outcome"`
}

// Annotate describes the resource.
func (r *EtcdRecovery) Annotate(a infer.Annotator) {
	a.Describe(r, "Recovers a cluster's etcd from a snapshot, as talosctl bootstrap --recover-from does, when every control plane's etcd is empty and waits "+
		"for the bootstrap: the snapshot is checked (whole 512-byte pages and its sha256 trailer) and read (revision, keys), uploaded to the bootstrap "+
		"control plane (EtcdRecover), and etcd is bootstrapped from it (recover_etcd); then it waits until etcd runs with a leader on every control plane. "+
		"On a cluster whose etcd runs it records that nothing was needed; a control plane that keeps etcd data while etcd has no leader is refused by name. "+
		"Deleting it changes nothing.")
}

// Annotate describes the inputs.
func (a *EtcdRecoveryArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Snapshot, "The snapshot file (absolute path), e.g. one the rollout wrote before a control-plane change.")
	an.Describe(&a.SnapshotSha256, "The sha256 of the snapshot file; set by the provider's check from the file, so a different file is a change.")
	an.Describe(&a.ControlPlanes, "Every control plane of the cluster: each must answer, and have an empty etcd that waits for the bootstrap.")
	an.Describe(&a.BootstrapNode, "The name of the control plane that gets the snapshot and the bootstrap (one of controlPlanes).")
	an.Describe(&a.ClientConfiguration, "Credentials for mutual TLS with the nodes (os:admin; unused when machineSecrets is given).")
	an.Describe(&a.MachineSecrets, machineSecretsDescription)
	an.Describe(&a.Timeout, "How long each step may take: the upload, the bootstrap, and etcd running with a leader on every control plane (a Go duration). Default 15m.")
	an.SetDefault(&a.Timeout, DefaultHealthTimeout)
}

// Annotate describes the outputs.
func (s *EtcdRecoveryState) Annotate(a infer.Annotator) {
	a.Describe(&s.Recovered, "Whether this resource restored etcd from the snapshot (false: etcd already ran, nothing was done).")
	a.Describe(&s.Revision, "The snapshot's etcd revision.")
	a.Describe(&s.Keys, "How many keys the snapshot holds (every bucket, as etcdutl snapshot status counts them).")
	a.Describe(&s.Outcome, "What the create did, in a line.")
}

// Check judges the declaration and the snapshot file; every problem is reported at once. The
// file's sha256 becomes an input, so another file at the same path is a change.
func (EtcdRecovery) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[EtcdRecoveryArgs], error) {
	args, failures, err := infer.DefaultCheck[EtcdRecoveryArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[EtcdRecoveryArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)
	if v, ok := req.NewInputs.GetOk("snapshot"); !ok || !v.IsComputed() {
		if !filepath.IsAbs(args.Snapshot) {
			fail("snapshot", fmt.Sprintf("%q is not an absolute path", args.Snapshot))
		} else if snap, err := recovery.Inspect(args.Snapshot); err != nil {
			fail("snapshot", err.Error())
		} else {
			args.SnapshotSha256 = snap.Sha256
		}
	}
	checkDuration(req.NewInputs, "timeout", args.Timeout, "15m", fail)
	checkMachineSecrets(req.NewInputs, args.MachineSecrets, fail)
	if v, ok := req.NewInputs.GetOk("controlPlanes"); ok && !v.HasComputed() {
		if len(args.ControlPlanes) == 0 {
			fail("controlPlanes", "no control plane: list every control plane of the cluster")
		}
		seen := map[string]bool{}
		for i, n := range args.ControlPlanes {
			if seen[n.Name] {
				fail(fmt.Sprintf("controlPlanes[%d].name", i), fmt.Sprintf("%q is listed twice", n.Name))
			}
			seen[n.Name] = true
		}
		if b, ok := req.NewInputs.GetOk("bootstrapNode"); (!ok || !b.IsComputed()) && !seen[args.BootstrapNode] {
			fail("bootstrapNode", fmt.Sprintf("%q is not one of controlPlanes", args.BootstrapNode))
		}
	}
	return infer.CheckResponse[EtcdRecoveryArgs]{Inputs: args, Failures: failures}, nil
}

// Create recovers etcd when every control plane's waits for the bootstrap; a preview shows the
// plan or the refusal.
func (EtcdRecovery) Create(ctx context.Context, req infer.CreateRequest[EtcdRecoveryArgs]) (infer.CreateResponse[EtcdRecoveryState], error) {
	state, err := recoverEtcd(ctx, req.Inputs, req.DryRun)
	return infer.CreateResponse[EtcdRecoveryState]{ID: req.Name, Output: state}, err
}

// Diff is a change only when the snapshot file is another one and every control plane's etcd
// waits for the bootstrap again (or cannot be asked: the update's preview then says why). Moving
// the file, renaming a control plane or a new timeout changes nothing on a cluster that runs.
func (EtcdRecovery) Diff(ctx context.Context, req infer.DiffRequest[EtcdRecoveryArgs, EtcdRecoveryState]) (infer.DiffResponse, error) {
	if req.Inputs.SnapshotSha256 == "" || req.Inputs.SnapshotSha256 == req.State.SnapshotSha256 {
		return infer.DiffResponse{}, nil
	}
	creds, err := dialCredentials(req.Inputs.ClientConfiguration, req.Inputs.MachineSecrets, node.ClockSkew)
	if err == nil {
		if action, jerr := recovery.Judge(recovery.AskAll(ctx, targets(req.Inputs.ControlPlanes), creds, refreshAttempt)); jerr == nil && action == recovery.NotNeeded {
			return infer.DiffResponse{}, nil
		}
	}
	return infer.DiffResponse{
		HasChanges:   true,
		DetailedDiff: map[string]p.PropertyDiff{"snapshotSha256": {Kind: p.Update, InputDiff: true}},
	}, nil
}

// Update is a Create with another snapshot on a cluster wiped again.
func (EtcdRecovery) Update(ctx context.Context, req infer.UpdateRequest[EtcdRecoveryArgs, EtcdRecoveryState]) (infer.UpdateResponse[EtcdRecoveryState], error) {
	state, err := recoverEtcd(ctx, req.Inputs, req.DryRun)
	return infer.UpdateResponse[EtcdRecoveryState]{Output: state}, err
}

// Delete changes nothing: the recovery happened, or was not needed.
func (EtcdRecovery) Delete(context.Context, infer.DeleteRequest[EtcdRecoveryState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

func targets(cps []RecoveryNode) []node.Target {
	out := make([]node.Target, len(cps))
	for i, n := range cps {
		out[i] = node.Target{Name: n.Name, Address: n.Address}
	}
	return out
}

// recoverEtcd asks every control plane, judges, and (unless dryRun) recovers. The preview logs
// the plan line; a refusal is the error, before anything is changed.
func recoverEtcd(ctx context.Context, a EtcdRecoveryArgs, dryRun bool) (EtcdRecoveryState, error) {
	state := EtcdRecoveryState{EtcdRecoveryArgs: a}
	state.MachineSecrets = nil
	logger := p.GetLogger(ctx)
	if dryRun && a.ClientConfiguration.ClientKey == "" && (a.MachineSecrets == nil || a.MachineSecrets.Certs.Os.Key == "") {
		// A preview of a stack whose credentials are not known yet: nothing to ask with.
		return state, nil
	}
	snap, err := recovery.Inspect(a.Snapshot)
	if err != nil {
		return state, err
	}
	state.Revision, state.Keys = int(snap.Revision), snap.Keys
	timeout, err := positiveDuration("timeout", a.Timeout)
	if err != nil {
		return state, err
	}
	issuer, err := issuerOf(a.MachineSecrets)
	if err != nil {
		return state, err
	}
	creds := func() node.Credentials {
		if issuer != nil {
			return issuer.Credentials(timeout + node.ClockSkew)
		}
		return credentials(a.ClientConfiguration)
	}
	cps := targets(a.ControlPlanes)
	var boot node.Target
	var others []string
	for _, t := range cps {
		if t.Name == a.BootstrapNode {
			boot = t
		} else {
			others = append(others, t.Name)
		}
	}
	if boot.Address == "" {
		return state, fmt.Errorf("bootstrapNode %q is not one of controlPlanes", a.BootstrapNode)
	}
	seen := recovery.AskAll(ctx, cps, creds(), min(timeout, refreshAttempt))
	action, err := recovery.Judge(seen)
	if err != nil {
		return state, fmt.Errorf("recover etcd from %s: %w", snap.Path, err)
	}
	if action == recovery.NotNeeded {
		state.Outcome = fmt.Sprintf("nothing to recover: etcd runs with a leader on %s; the snapshot %s was not used", strings.Join(running(seen), ", "), snap.Path)
		logger.Info(state.Outcome)
		return state, nil
	}
	plan := fmt.Sprintf("recovers etcd from %s on %s", snap.Describe(), boot.Name)
	if len(others) > 0 {
		plan += "; then " + strings.Join(others, ", ") + " join"
	}
	if dryRun {
		logger.Info("plan: " + plan)
		state.Recovered, state.Outcome = true, plan
		return state, nil
	}
	logger.Info(plan)
	sink := progressSink(ctx)
	if err := recovery.Restore(ctx, boot, creds, snap, timeout, sink); err != nil {
		return state, err
	}
	if err := recovery.WaitHealthy(ctx, cps, creds, timeout, sink); err != nil {
		return state, fmt.Errorf("recover etcd on %s: %w", boot, err)
	}
	state.Recovered = true
	state.Outcome = fmt.Sprintf("recovered etcd from %s (revision %d, %d keys, sha256 %s) on %s at %s", snap.Path, snap.Revision, snap.Keys, snap.Sha256, boot.Name, time.Now().UTC().Format(time.RFC3339))
	return state, nil
}

// running names the control planes whose etcd runs.
func running(seen []recovery.Seen) []string {
	var out []string
	for _, s := range seen {
		if s.Service == "Running" {
			out = append(out, s.Target.Name)
		}
	}
	return out
}
