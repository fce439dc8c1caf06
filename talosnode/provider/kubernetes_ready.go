package provider

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/pulumi/pulumi-go-provider/infer"

	"talos-cluster/talosnode/kube"
)

// DefaultReadyTimeout bounds the wait for the Kubernetes API when the stack sets none: on bare
// metal etcd, the API server and the VIP come up minutes after the bootstrap.
const DefaultReadyTimeout = "15m"

// KubernetesReady waits, when created or updated, until the cluster's Kubernetes API is ready for
// what comes after it: the API server's /readyz (stage "api-server"), and the named Nodes Ready
// (stage "nodes", once a CNI runs: without one no Node turns Ready). The Kubernetes provider
// checks the cluster once when it starts and then fails every create, so it must not start early.
type KubernetesReady struct{}

// KubernetesReadyArgs is what to wait for.
type KubernetesReadyArgs struct {
	Kubeconfig string   `pulumi:"kubeconfig" provider:"secret"`
	Stage      string   `pulumi:"stage"`
	Endpoints  []string `pulumi:"endpoints,optional"`
	Nodes      []string `pulumi:"nodes,optional"`
	Timeout    string   `pulumi:"timeout,optional"`
}

// KubernetesReadyState is the declaration.
type KubernetesReadyState struct {
	KubernetesReadyArgs
}

// Annotate describes the resource.
func (r *KubernetesReady) Annotate(a infer.Annotator) {
	a.Describe(r, "Waits, when created or updated, until a cluster's Kubernetes API is ready: /readyz on the kubeconfig's server and every other endpoint "+
		"(stage api-server), or every named Node Ready (stage nodes). Reads and deletes touch nothing.")
}

// Annotate describes the inputs.
func (a *KubernetesReadyArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Kubeconfig, "An admin kubeconfig of the cluster.")
	an.Describe(&a.Stage, "What the wait is for, named in its messages: api-server or nodes.")
	an.Describe(&a.Endpoints, "Other URLs of the API server to ask /readyz too, e.g. https://<VIP>:6443.")
	an.Describe(&a.Nodes, "Node names that must be Ready (stage nodes).")
	an.Describe(&a.Timeout, "How long to wait (a Go duration). Default 15m.")
	an.SetDefault(&a.Timeout, DefaultReadyTimeout)
}

// Check validates the declaration.
func (KubernetesReady) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[KubernetesReadyArgs], error) {
	args, failures, err := infer.DefaultCheck[KubernetesReadyArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[KubernetesReadyArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)
	switch args.Stage {
	case "api-server":
	case "nodes":
		if nodes, ok := req.NewInputs.GetOk("nodes"); ok && !nodes.IsComputed() && len(args.Nodes) == 0 {
			fail("nodes", "stage nodes needs the names of the Nodes to wait for")
		}
	default:
		fail("stage", fmt.Sprintf("%q is not api-server or nodes", args.Stage))
	}
	checkDuration(req.NewInputs, "timeout", args.Timeout, "15m", fail)
	for i, e := range args.Endpoints {
		if u, err := url.Parse(e); err != nil || u.Scheme != "https" || u.Host == "" {
			fail(fmt.Sprintf("endpoints[%d]", i), fmt.Sprintf("%q is not an https:// URL", e))
		}
	}
	return infer.CheckResponse[KubernetesReadyArgs]{Inputs: args, Failures: failures}, nil
}

// Create waits until ready.
func (KubernetesReady) Create(ctx context.Context, req infer.CreateRequest[KubernetesReadyArgs]) (infer.CreateResponse[KubernetesReadyState], error) {
	state := KubernetesReadyState{KubernetesReadyArgs: req.Inputs}
	if req.DryRun {
		return infer.CreateResponse[KubernetesReadyState]{Output: state}, nil
	}
	if err := waitReady(ctx, req.Inputs); err != nil {
		return infer.CreateResponse[KubernetesReadyState]{}, err
	}
	return infer.CreateResponse[KubernetesReadyState]{ID: req.Name, Output: state}, nil
}

// Update waits again: the kubeconfig, the endpoints or the nodes changed.
func (KubernetesReady) Update(ctx context.Context, req infer.UpdateRequest[KubernetesReadyArgs, KubernetesReadyState]) (infer.UpdateResponse[KubernetesReadyState], error) {
	state := KubernetesReadyState{KubernetesReadyArgs: req.Inputs}
	if !req.DryRun {
		if err := waitReady(ctx, req.Inputs); err != nil {
			return infer.UpdateResponse[KubernetesReadyState]{}, err
		}
	}
	return infer.UpdateResponse[KubernetesReadyState]{Output: state}, nil
}

// Read keeps the state: a refresh must not wait on the cluster.
func (KubernetesReady) Read(_ context.Context, req infer.ReadRequest[KubernetesReadyArgs, KubernetesReadyState]) (infer.ReadResponse[KubernetesReadyArgs, KubernetesReadyState], error) {
	return infer.ReadResponse[KubernetesReadyArgs, KubernetesReadyState]{ID: req.ID, Inputs: req.Inputs, State: req.State}, nil
}

// Delete does nothing.
func (KubernetesReady) Delete(context.Context, infer.DeleteRequest[KubernetesReadyState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

func waitReady(ctx context.Context, a KubernetesReadyArgs) error {
	timeout, err := positiveDuration("timeout", a.Timeout)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Stage, err)
	}
	c, err := kube.New(a.Kubeconfig)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Stage, err)
	}
	check := func(ctx context.Context) string { return c.Readyz(ctx, a.Endpoints...) }
	what := "the API server ready (/readyz)"
	if a.Stage == "nodes" {
		check = func(ctx context.Context) string { return c.NodesReady(ctx, a.Nodes) }
		what = fmt.Sprintf("%d Kubernetes nodes Ready", len(a.Nodes))
	}
	w := progressSink(ctx).Start(fmt.Sprintf("%s: waiting for %s", a.Stage, what), timeout)
	progress := func(seen string) { w.Seen(seen) }
	if err := kube.Wait(ctx, timeout, 2*time.Second, check, progress); err != nil {
		return fmt.Errorf("%s: %s %w", a.Stage, what, err)
	}
	return nil
}
