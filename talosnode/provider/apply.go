package provider

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
	"talos-cluster/talosnode/redact"
	"talos-cluster/talosnode/rollout"
	"talos-cluster/talosnode/wait"
)

// ConfigurationApply installs a new node's first config: a node in maintenance mode (booted from
// the Talos image, no config yet) gets it over the insecure maintenance API, as `talosctl
// apply-config --insecure` and the talos provider's apply do. A node that already answers over
// mutual TLS with the cluster's credentials was configured before (by the talos provider's apply
// this resource replaces, or by hand) and is adopted: nothing is applied to it. Changes of a
// running node are the Rollout's, one node at a time, so the resource's Diff shows none; deleting
// it leaves the node alone.
type ConfigurationApply struct{}

// ConfigurationApplyArgs is the node and the config it installs.
type ConfigurationApplyArgs struct {
	Node                 string              `pulumi:"node"`
	ClientConfiguration  ClientConfiguration `pulumi:"clientConfiguration" provider:"secret"`
	MachineConfiguration string              `pulumi:"machineConfiguration" provider:"secret"`
	ApplyMode            string              `pulumi:"applyMode,optional"`
	Timeout              string              `pulumi:"timeout,optional"`
	// MachineSecrets, when given, is what the provider mints its own client certificates from.
	MachineSecrets *MachineSecrets `pulumi:"machineSecrets,optional" provider:"secret"`
}

// ConfigurationApplyState is the declaration and what the create did.
type ConfigurationApplyState struct {
	ConfigurationApplyArgs
	// Adopted is true when the node answered over mutual TLS at create: nothing was applied.
	Adopted bool `pulumi:"adopted"`
	// InstallMode is the mode the maintenance API was asked for ("" when adopted).
	InstallMode string `pulumi:"installMode"`
}

// Annotate describes the resource.
func (r *ConfigurationApply) Annotate(a infer.Annotator) {
	a.Describe(r, "Installs a new node's first machine config. Create waits (up to timeout) for the node: one in maintenance mode "+
		"gets the config over the insecure maintenance API; one that already answers over mutual TLS with the cluster's credentials "+
		"(configured before) is adopted and nothing is applied to it. Later changes of the config or apply mode show no diff: "+
		"running nodes are the Rollout's, one at a time. A changed node address replaces it. Reads and deletes touch nothing.")
}

// Annotate describes the inputs.
func (a *ConfigurationApplyArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Node, "The node's address (Talos API on port 50000 unless host:port is given).")
	an.Describe(&a.ClientConfiguration, "The cluster's client configuration: a node that answers over mutual TLS with it is adopted.")
	an.Describe(&a.MachineConfiguration, "The full machine configuration (YAML) a node in maintenance mode installs.")
	an.Describe(&a.ApplyMode, "The stack's apply mode: auto, no_reboot, reboot or staged. Maintenance mode takes auto and reboot; "+
		"no_reboot and staged, which it refuses, install with auto (a node without a config installs and reboots in any mode).")
	an.Describe(&a.Timeout, "How long to wait for the node to answer (a Go duration). Default 10m.")
	an.Describe(&a.MachineSecrets, machineSecretsDescription)
	an.SetDefault(&a.ApplyMode, "auto")
	an.SetDefault(&a.Timeout, DefaultTimeout)
}

// Annotate describes the outputs.
func (s *ConfigurationApplyState) Annotate(a infer.Annotator) {
	a.Describe(&s.Adopted, "True when the node already answered over mutual TLS at create, so nothing was applied.")
	a.Describe(&s.InstallMode, "The mode the maintenance API was asked to install with (AUTO or REBOOT); empty when adopted.")
}

// Check validates the declaration; every problem is reported at once. The config must decode (a
// node would refuse it, after the wait), and the reason never quotes it: it is a secret.
func (ConfigurationApply) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[ConfigurationApplyArgs], error) {
	args, failures, err := infer.DefaultCheck[ConfigurationApplyArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[ConfigurationApplyArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)
	if v, ok := req.NewInputs.GetOk("node"); ok && !v.IsComputed() && args.Node == "" {
		fail("node", "the node's address is empty")
	}
	if v, ok := req.NewInputs.GetOk("applyMode"); !ok || !v.IsComputed() {
		if _, err := rollout.ApplyMode(args.ApplyMode); err != nil {
			fail("applyMode", err.Error())
		}
	}
	checkDuration(req.NewInputs, "timeout", args.Timeout, "10m or 90s", fail)
	checkMachineSecrets(req.NewInputs, args.MachineSecrets, fail)
	if v, ok := req.NewInputs.GetOk("machineConfiguration"); !ok || !v.IsComputed() {
		if _, err := configloader.NewFromBytes([]byte(args.MachineConfiguration)); err != nil {
			fail("machineConfiguration", "not a machine config Talos can load: "+redact.ErrorText(err))
		}
	}
	return infer.CheckResponse[ConfigurationApplyArgs]{Inputs: args, Failures: failures}, nil
}

// Create installs the config on a node in maintenance mode, or adopts a configured one.
func (ConfigurationApply) Create(ctx context.Context, req infer.CreateRequest[ConfigurationApplyArgs]) (infer.CreateResponse[ConfigurationApplyState], error) {
	state := ConfigurationApplyState{ConfigurationApplyArgs: req.Inputs}
	state.MachineSecrets = nil
	if req.DryRun {
		return infer.CreateResponse[ConfigurationApplyState]{Output: state}, nil
	}
	t := node.Target{Name: req.Name, Address: req.Inputs.Node}
	sink := progressSink(ctx)
	result, err := install(ctx, t, req.Inputs, sink)
	if err != nil {
		return infer.CreateResponse[ConfigurationApplyState]{}, err
	}
	state.Adopted = result.adopted
	if result.adopted {
		// Said once, kept in the record: an up that migrates a stack adopts every node.
		p.GetLogger(ctx).Info(fmt.Sprintf("%s already answers over mutual TLS with the cluster's credentials: adopted, nothing applied "+
			"(changes of a running node are the Rollout's)", t))
	} else {
		state.InstallMode = result.mode.String()
	}
	return infer.CreateResponse[ConfigurationApplyState]{ID: req.Name, Output: state}, nil
}

// Read keeps the state: a refresh must not touch the node (NodeState reads it).
func (ConfigurationApply) Read(_ context.Context, req infer.ReadRequest[ConfigurationApplyArgs, ConfigurationApplyState]) (infer.ReadResponse[ConfigurationApplyArgs, ConfigurationApplyState], error) {
	return infer.ReadResponse[ConfigurationApplyArgs, ConfigurationApplyState]{ID: req.ID, Inputs: req.Inputs, State: req.State}, nil
}

// Delete does nothing to the machine, as the talos provider's apply without on_destroy: a node
// taken out of the stack keeps running its config until someone resets it.
func (ConfigurationApply) Delete(context.Context, infer.DeleteRequest[ConfigurationApplyState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

// installResult is what a create did: adopted a configured node, or installed in mode.
type installResult struct {
	adopted bool
	mode    machine.ApplyConfigurationRequest_Mode
}

// maintenanceMode is the mode a node in maintenance installs with: the stack's when Talos'
// maintenance service takes it (AUTO, REBOOT; internal/app/maintenance/server.go refuses the
// others with Unimplemented), else AUTO: a node without a config installs and reboots whatever
// the mode says, so no_reboot and staged mean nothing there.
func maintenanceMode(stack string) machine.ApplyConfigurationRequest_Mode {
	if m, err := rollout.ApplyMode(stack); err == nil && m == machine.ApplyConfigurationRequest_REBOOT {
		return m
	}
	return machine.ApplyConfigurationRequest_AUTO
}

// install waits until the node answers, each attempt first over mutual TLS (a configured node:
// adopted, never sent a config) and then without a client certificate (maintenance mode: the
// config is applied). A node answering neither is down, still booting, or a worker whose API
// certificate no control plane has signed yet: asked again until the timeout, the progress
// showing what each way saw. An answer that is a refusal (a config Talos rejects) ends it at once.
func install(ctx context.Context, t node.Target, a ConfigurationApplyArgs, sink progress.Sink) (installResult, error) {
	timeout, err := positiveDuration("timeout", a.Timeout)
	if err != nil {
		return installResult{}, fmt.Errorf("%s: %w", t, err)
	}
	creds, err := dialCredentials(a.ClientConfiguration, a.MachineSecrets, timeout+node.ClockSkew)
	if err != nil {
		return installResult{}, fmt.Errorf("%s: %w", t, err)
	}
	mode := maintenanceMode(a.ApplyMode)
	var result installResult
	w := sink.Start(fmt.Sprintf("waiting for %s to answer, in maintenance mode or over mutual TLS", t.Where()), timeout)
	poll := wait.Poll{Timeout: timeout, Interval: 500 * time.Millisecond, MaxInterval: 5 * time.Second, Attempt: 30 * time.Second, Progress: w.Seen}
	_, err = poll.Until(ctx, func(ctx context.Context) (bool, string, error) {
		configured, mtlsSeen := answersOverMutualTLS(ctx, t, creds)
		if configured {
			result = installResult{adopted: true}
			return true, "", nil
		}
		applied, maintSeen, err := applyInMaintenance(ctx, t, []byte(a.MachineConfiguration), mode)
		if err != nil {
			return false, "", err
		}
		if applied {
			result = installResult{mode: mode}
			return true, "", nil
		}
		return false, "mutual TLS: " + mtlsSeen + "; maintenance mode: " + maintSeen, nil
	})
	var expired *wait.Expired
	if errors.As(err, &expired) {
		return installResult{}, fmt.Errorf("%s: install the first config: the node answered neither in maintenance mode nor over mutual TLS %w "+
			"(is the machine on, booted from the Talos image, and is %s its address?)", t, err, t.Address)
	}
	return result, err
}

// answersOverMutualTLS asks the node's Version with the cluster's credentials: true when it
// answers (it was configured with this cluster's machine CA), else what the attempt saw.
func answersOverMutualTLS(ctx context.Context, t node.Target, creds node.Credentials) (bool, string) {
	c, err := node.Dial(ctx, t, creds)
	if err != nil {
		return false, node.Describe(err)
	}
	defer c.Close() //nolint:errcheck
	if _, err := c.Version(ctx); err != nil {
		return false, node.Describe(err)
	}
	return true, ""
}

// applyInMaintenance is the talos provider's maintenance path (util.go talosClientOp: a client
// without a certificate that skips verifying the node's self-signed maintenance certificate,
// probed with Disks, which the maintenance service serves to anyone), then ApplyConfiguration.
// A node that does not answer so is not in maintenance (or not up): false and what was seen. A
// refusal of the apply itself (the config or mode rejected) is an error naming the node.
func applyInMaintenance(ctx context.Context, t node.Target, config []byte, mode machine.ApplyConfigurationRequest_Mode) (bool, string, error) {
	c, err := client.New(ctx, client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints(t.Address)) //nolint:gosec // maintenance mode has no trust yet
	if err != nil {
		return false, "", &node.Error{Target: t, Phase: "maintenance client", Err: err}
	}
	defer c.Close() //nolint:errcheck
	if _, err := c.Disks(ctx); err != nil {
		return false, node.Describe(err), nil
	}
	if _, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: config, Mode: mode}); err != nil {
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return false, "apply configuration: " + node.Describe(err), nil
		}
		// The node's message may quote the config it refused: only the first line and keys are kept.
		return false, "", fmt.Errorf("%s: apply configuration in maintenance mode (%s): %s", t, mode, redact.ErrorText(errors.New(node.Describe(err))))
	}
	return true, "", nil
}

// installDiff is the resource's whole diff: only a new address replaces it (another machine, or
// the same one moved, which the new create installs or adopts). A changed config, apply mode,
// credential or timeout is no change here: the config of a running node is the Rollout's, one
// node at a time, and an update here would reach every node at once. Said in the resource rather
// than in the program's ignoreChanges, so no program using it can forget it, and a preview shows
// no pending change that an up would never make.
func installDiff(req p.DiffRequest) p.DiffResponse {
	old, declared := req.State.Get("node"), req.Inputs.Get("node")
	if !declared.IsComputed() && declared.Equals(old) {
		return p.DiffResponse{}
	}
	return p.DiffResponse{
		HasChanges:   true,
		DetailedDiff: map[string]p.PropertyDiff{"node": {Kind: p.UpdateReplace, InputDiff: true}},
	}
}
