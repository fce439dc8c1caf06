package provider

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
	"talos-cluster/talosnode/redact"
)

// DefaultTimeout bounds the wait for a node that does not answer, when the stack sets none.
const DefaultTimeout = "10m"

// NodeState records what one Talos node runs. Create waits for the node and reads it; Read
// (refresh) writes what the node runs into the fields the stack declares, so a preview after a
// refresh shows drift as a change of those fields; Update reads again; Delete leaves the node
// alone. It never changes a node.
type NodeState struct{}

// ClientConfiguration is the cluster's client configuration, as the talos provider's
// machine.Secrets outputs it (clientConfiguration) and a talosconfig holds it.
type ClientConfiguration struct {
	CACertificate     string `pulumi:"caCertificate"`
	ClientCertificate string `pulumi:"clientCertificate"`
	ClientKey         string `pulumi:"clientKey" provider:"secret"`
}

// NodeStateArgs is what the stack declares for the node.
type NodeStateArgs struct {
	Node                 string              `pulumi:"node"`
	ClientConfiguration  ClientConfiguration `pulumi:"clientConfiguration" provider:"secret"`
	TalosVersion         string              `pulumi:"talosVersion"`
	SchematicID          string              `pulumi:"schematicId"`
	InstallerImage       string              `pulumi:"installerImage"`
	KubernetesVersion    string              `pulumi:"kubernetesVersion"`
	MachineConfiguration string              `pulumi:"machineConfiguration" provider:"secret"`
	Timeout              string              `pulumi:"timeout,optional"`
	// VIP is checked against the node's links because Talos silently drops an interfaces entry
	// that matches no link: the address would never come up and nothing would say so.
	VIP string `pulumi:"vip,optional"`
	// Config and ConfigHash are computed by Check from MachineConfiguration and kept as plain
	// inputs: the diff of a redacted config is what a review reads. Config holds one entry per
	// value, keyed by its path, so a diff names the keys that change (redact.Keys).
	Config     map[string]string `pulumi:"config,optional"`
	ConfigHash string            `pulumi:"configHash,optional"`
	// MachineSecrets, when given, is what the provider mints its own client certificates from;
	// kept among the inputs only (never in the outputs) and left out of every diff.
	MachineSecrets *MachineSecrets `pulumi:"machineSecrets,optional" provider:"secret"`
}

// NodeStateState is the declared state and what the node reported at the last read.
type NodeStateState struct {
	NodeStateArgs
	RunningTalosVersion      string `pulumi:"runningTalosVersion"`
	BootedSchematicID        string `pulumi:"bootedSchematicId"`
	AppliedInstallerImage    string `pulumi:"appliedInstallerImage"`
	AppliedKubernetesVersion string `pulumi:"appliedKubernetesVersion"`
	AppliedConfig            string `pulumi:"appliedConfig"`
	AppliedConfigHash        string `pulumi:"appliedConfigHash"`
	Stage                    string `pulumi:"stage"`
	Ready                    bool   `pulumi:"ready"`
	// VIPLink and Links are optional so that a state written before they existed still
	// decodes (infer refuses a state that lacks a required output); every read sets them.
	VIPLink string   `pulumi:"vipLink,optional"`
	Links   []string `pulumi:"links,optional"`
}

// Annotate describes the resource.
func (r *NodeState) Annotate(a infer.Annotator) {
	a.Describe(r, "What one Talos node runs, read over mutual TLS, next to what the stack declares for it. "+
		"A refresh writes the node's live values into the declared fields, so drift made on the node shows as a change. "+
		"It never changes the node; deleting it leaves the node alone.")
}

// Annotate describes the client configuration.
func (c *ClientConfiguration) Annotate(a infer.Annotator) {
	a.Describe(c, "The cluster's client configuration (talosconfig credentials): base64-encoded PEM, as machine.Secrets' clientConfiguration.")
	a.Describe(&c.CACertificate, "The machine CA certificate, base64-encoded PEM.")
	a.Describe(&c.ClientCertificate, "The client certificate (os:admin), base64-encoded PEM.")
	a.Describe(&c.ClientKey, "The client certificate's key, base64-encoded PEM.")
}

// Annotate describes the inputs.
func (a *NodeStateArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Node, "The node's address (Talos API on port 50000 unless host:port is given).")
	an.Describe(&a.ClientConfiguration, "Credentials for mutual TLS with the node (unused when machineSecrets is given).")
	an.Describe(&a.TalosVersion, "The Talos release the node should run, e.g. v1.11.5. A refresh stores the running one here.")
	an.Describe(&a.SchematicID, "The Image Factory schematic the node should boot. A refresh stores the booted one here.")
	an.Describe(&a.InstallerImage, "The installer image the node's config should carry. A refresh stores the applied one here.")
	an.Describe(&a.KubernetesVersion, "The Kubernetes version the node's config should run, e.g. 1.34.1 (no leading v). A refresh stores the applied one here.")
	an.Describe(&a.MachineConfiguration, "The full machine configuration the node should carry (YAML).")
	an.Describe(&a.Timeout, "How long to wait for a node that does not answer over mutual TLS (a Go duration). Default 10m.")
	an.SetDefault(&a.Timeout, DefaultTimeout)
	an.Describe(&a.VIP, "The shared (VIP) address the node's config should carry (machine.network.interfaces[].vip.ip); empty for none, as on workers. "+
		"A refresh stores the applied one here, followed by why it cannot come up when its interfaces entry matches none of the node's links (or has ignore: true): "+
		`10.20.0.10 (no link matches interface "eth0"; links: enp1s0).`)
	an.Describe(&a.Config, "Computed from machineConfiguration: the config with every secret replaced by (redacted), one entry per value keyed by its path "+
		`(machine.sysctls["net.core.somaxconn"], machine.certSANs[0]; another document's paths start with its kind), so a diff names the keys that change. `+
		"A refresh stores the applied one here. A value given is replaced.")
	an.Describe(&a.ConfigHash, "Computed from machineConfiguration: sha256 of the unredacted config in canonical form. A refresh stores the applied one's here. A value given is replaced.")
	an.Describe(&a.MachineSecrets, machineSecretsDescription)
}

// Annotate describes the outputs.
func (s *NodeStateState) Annotate(a infer.Annotator) {
	a.Describe(&s.RunningTalosVersion, "The Talos release the node runs (Version API).")
	a.Describe(&s.BootedSchematicID, "The Image Factory schematic of the image the node booted (the schematic extension); empty for an image the factory did not build.")
	a.Describe(&s.AppliedInstallerImage, "machine.install.image of the config the node applied.")
	a.Describe(&s.AppliedKubernetesVersion, "The kubelet image tag of the config the node applied, without a leading v.")
	a.Describe(&s.AppliedConfig, "The config the node applied, redacted as config is.")
	a.Describe(&s.AppliedConfigHash, "sha256 of the config the node applied, in canonical form, as configHash.")
	a.Describe(&s.Stage, "The node's machine stage (maintenance, running, upgrading, rebooting, ...).")
	a.Describe(&s.Ready, "Whether the node reports itself ready.")
	a.Describe(&s.VIPLink, "The link the applied config's VIP entry resolves to (by interface name, alias or deviceSelector); empty when there is no VIP or no link matches.")
	a.Describe(&s.Links, "The names of the node's network links (LinkStatus), sorted.")
}

// Check validates the declared inputs and computes config and configHash. They are unknown
// while machineConfiguration is (a preview before the config exists), never empty.
func (NodeState) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[NodeStateArgs], error) {
	inputs := req.NewInputs.Delete("config", "configHash")
	declared, hasConfig := inputs.GetOk("machineConfiguration")
	configUnknown := hasConfig && declared.IsComputed()
	if configUnknown {
		inputs = inputs.Set("config", property.New(property.Computed)).Set("configHash", property.New(property.Computed))
	}
	args, failures, err := infer.DefaultCheck[NodeStateArgs](ctx, inputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[NodeStateArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)

	// Talos tags releases with a leading v, and a kubelet image tag's v is dropped when it is
	// read back: store both the way a read returns them, or they would never compare equal.
	if args.TalosVersion != "" && !strings.HasPrefix(args.TalosVersion, "v") {
		args.TalosVersion = "v" + args.TalosVersion
	}
	args.KubernetesVersion = strings.TrimPrefix(args.KubernetesVersion, "v")
	checkDuration(inputs, "timeout", args.Timeout, "10m or 90s", fail)
	checkMachineSecrets(inputs, args.MachineSecrets, fail)
	if vip, ok := inputs.GetOk("vip"); ok && vip.IsComputed() {
		// An output of the program, known by the time the resource is created.
	} else if _, err := netip.ParseAddr(args.VIP); args.VIP != "" && err != nil {
		fail("vip", fmt.Sprintf("%q is not an IP address", args.VIP))
	}
	if !configUnknown {
		cfg, err := redact.FromYAML([]byte(args.MachineConfiguration))
		if err != nil {
			// The reason must not quote the config: it is a secret.
			fail("machineConfiguration", redact.ErrorText(err))
		} else if keys, err := redact.Keys(cfg.Redacted); err != nil {
			fail("machineConfiguration", "list the redacted config's keys: "+redact.ErrorText(err))
		} else {
			args.Config, args.ConfigHash = keys, cfg.Hash
		}
	}
	return infer.CheckResponse[NodeStateArgs]{Inputs: args, Failures: failures}, nil
}

// Create waits until the node answers over mutual TLS (on a first up it is still installing),
// then records what it runs. What the stack declares is stored as declared: a mismatch shows in
// the next refresh, it is not hidden here.
func (NodeState) Create(ctx context.Context, req infer.CreateRequest[NodeStateArgs]) (infer.CreateResponse[NodeStateState], error) {
	state := NodeStateState{NodeStateArgs: req.Inputs}
	state.MachineSecrets = nil
	if req.DryRun {
		return infer.CreateResponse[NodeStateState]{Output: state}, nil
	}
	live, err := observe(ctx, "create", node.Target{Name: req.Name, Address: req.Inputs.Node}, req.Inputs, nil, progressSink(ctx))
	if err != nil {
		return infer.CreateResponse[NodeStateState]{}, err
	}
	state.record(live)
	// The id names the node in the messages of later reads, which get no resource name.
	return infer.CreateResponse[NodeStateState]{ID: req.Name, Output: state}, nil
}

// Read is a refresh: the node's live values go into the declared fields (inputs and state), so
// the next diff against the program names each field that drifted with both values. A node that
// does not answer fails the refresh; it is never dropped from the state.
func (NodeState) Read(ctx context.Context, req infer.ReadRequest[NodeStateArgs, NodeStateState]) (infer.ReadResponse[NodeStateArgs, NodeStateState], error) {
	declared := req.State.NodeStateArgs
	// The machine secrets are kept among the inputs only.
	declared.MachineSecrets = req.Inputs.MachineSecrets
	t := node.Target{Name: req.ID, Address: declared.Node}
	reader, useReader, err := readCredentials(declared.MachineSecrets)
	if err != nil {
		return infer.ReadResponse[NodeStateArgs, NodeStateState]{}, fmt.Errorf("refresh %s: %w", t, err)
	}
	var override *node.Credentials
	if useReader {
		override = &reader
	}
	live, err := observe(ctx, "refresh", t, declared, override, progressSink(ctx))
	if err != nil {
		return infer.ReadResponse[NodeStateArgs, NodeStateState]{}, err
	}
	inputs := req.Inputs
	inputs.setLive(live)
	state := req.State
	state.MachineSecrets = nil
	state.NodeStateArgs.setLive(live)
	state.record(live)
	return infer.ReadResponse[NodeStateArgs, NodeStateState]{ID: req.ID, Inputs: inputs, State: state}, nil
}

// Update records what the node runs under the new declaration. It changes nothing on the node.
func (NodeState) Update(ctx context.Context, req infer.UpdateRequest[NodeStateArgs, NodeStateState]) (infer.UpdateResponse[NodeStateState], error) {
	if req.DryRun {
		// A preview does not reach the node; the last read stands (infer marks it unknown where
		// the inputs changed).
		state := req.State
		state.NodeStateArgs = req.Inputs
		state.MachineSecrets = nil
		return infer.UpdateResponse[NodeStateState]{Output: state}, nil
	}
	state := NodeStateState{NodeStateArgs: req.Inputs}
	state.MachineSecrets = nil
	live, err := observe(ctx, "update", node.Target{Name: req.ID, Address: req.Inputs.Node}, req.Inputs, nil, progressSink(ctx))
	if err != nil {
		return infer.UpdateResponse[NodeStateState]{}, err
	}
	state.record(live)
	return infer.UpdateResponse[NodeStateState]{Output: state}, nil
}

// Delete leaves the node as it is: the resource only records it.
func (NodeState) Delete(context.Context, infer.DeleteRequest[NodeStateState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

// observed is what a read of the node found, redacted.
type observed struct {
	talosVersion, schematicID, installerImage, kubernetesVersion string
	config                                                       redact.Config
	configKeys                                                   map[string]string
	stage                                                        string
	ready                                                        bool
	vip                                                          node.VIP
	links                                                        []string
	// configDenied: the credential could not read the MachineConfig, so config, installerImage
	// and vip are not known, and kubernetesVersion is the KubeletConfig's ("" when it has none).
	configDenied bool
}

// observe waits for the node (up to the declared timeout) and reads it. op names the operation
// in messages: "refresh cp-1 (10.0.0.11): not answering over mutual TLS within 10m0s: ...".
// reader, when not nil, is the refresh's own credential (ReadTalosconfigEnv), used instead of the
// declared one: a MachineConfig it may not read is then observed.configDenied, not an error.
// While the node does not answer, the wait shows in sink where it stands: the node, its address
// and port, the last attempt's error, the time left.
func observe(ctx context.Context, op string, t node.Target, declared NodeStateArgs, reader *node.Credentials, sink progress.Sink) (observed, error) {
	declaredTimeout := declared.Timeout
	if declaredTimeout == "" {
		declaredTimeout = DefaultTimeout
	}
	timeout, err := positiveDuration("timeout", declaredTimeout)
	if err != nil {
		return observed{}, fmt.Errorf("%s %s: %w", op, t, err)
	}
	logger := p.GetLogger(ctx)
	w := sink.Start(fmt.Sprintf("%s: waiting for %s to answer over mutual TLS", op, t.Where()), timeout)
	progress := func(_ int, seen string) { w.Seen("last attempt: " + seen) }
	creds, err := dialCredentials(declared.ClientConfiguration, declared.MachineSecrets, timeout+node.ClockSkew)
	if err != nil {
		return observed{}, fmt.Errorf("%s %s: %w", op, t, err)
	}
	wait := node.Wait
	if reader != nil {
		creds, wait = *reader, node.WaitAvailable
	}
	s, err := wait(ctx, t, creds, timeout, progress)
	if err != nil {
		return observed{}, fmt.Errorf("%s %w", op, err)
	}
	if s.ConfigDenied {
		warnConfigNotCompared(t, logger.Warning)
		return observed{
			talosVersion:      s.TalosVersion,
			schematicID:       s.SchematicID,
			kubernetesVersion: s.KubernetesVersion,
			stage:             s.Stage,
			ready:             s.Ready,
			links:             s.Links,
			configDenied:      true,
		}, nil
	}
	cfg, err := redact.FromProvider(s.Config)
	if err != nil {
		return observed{}, fmt.Errorf("%s %s: applied config: %s", op, t, redact.ErrorText(err))
	}
	keys, err := redact.Keys(cfg.Redacted)
	if err != nil {
		return observed{}, fmt.Errorf("%s %s: applied config's keys: %s", op, t, redact.ErrorText(err))
	}
	return observed{
		talosVersion:      s.TalosVersion,
		schematicID:       s.SchematicID,
		installerImage:    s.InstallerImage,
		kubernetesVersion: s.KubernetesVersion,
		config:            cfg,
		configKeys:        keys,
		stage:             s.Stage,
		ready:             s.Ready,
		vip:               s.VIP,
		links:             s.Links,
	}, nil
}

// setLive puts what the node runs where the stack declares what it should run. What was not
// read (the config, under os:reader) stays as recorded: no drift is made up.
func (a *NodeStateArgs) setLive(o observed) {
	a.TalosVersion = o.talosVersion
	a.SchematicID = o.schematicID
	if o.configDenied {
		if o.kubernetesVersion != "" {
			a.KubernetesVersion = o.kubernetesVersion
		}
		return
	}
	a.InstallerImage = o.installerImage
	a.KubernetesVersion = o.kubernetesVersion
	a.Config = o.configKeys
	a.ConfigHash = o.config.Hash
	a.VIP = o.vip.Live()
}

// record sets the outputs from a read; what was not read (the config, under os:reader) keeps
// its recorded value.
func (s *NodeStateState) record(o observed) {
	s.RunningTalosVersion = o.talosVersion
	s.BootedSchematicID = o.schematicID
	s.Stage = o.stage
	s.Ready = o.ready
	s.Links = o.links
	if o.configDenied {
		if o.kubernetesVersion != "" {
			s.AppliedKubernetesVersion = o.kubernetesVersion
		}
		return
	}
	s.AppliedInstallerImage = o.installerImage
	s.AppliedKubernetesVersion = o.kubernetesVersion
	s.AppliedConfig = o.config.Redacted
	s.AppliedConfigHash = o.config.Hash
	s.Stage = o.stage
	s.Ready = o.ready
	s.VIPLink = o.vip.Link
	s.Links = o.links
}

// machineSecretsDescription describes the machineSecrets input of every resource that dials nodes.
const machineSecretsDescription = "The talos plugin's machine.Secrets machineSecrets, unchanged. When given, the provider mints its own os:admin " +
	"client certificate from the Talos CA in it (certs.os) for its calls, valid for an hour (or the operation) from five minutes back, " +
	"instead of using clientConfiguration's, which expires a year after the secrets were made. The minted certificate is never stored; " +
	"this input is kept among the inputs only and is no change in a diff."
