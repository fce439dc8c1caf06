package provider

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pulumi/pulumi-go-provider/infer"

	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/progress"
)

// TalosAPIPort is where apid listens, in maintenance mode too (Talos' constants.ApidPort).
const TalosAPIPort = 50000

// Reachable waits, when created, until a new node accepts connections on the Talos API. The
// talos provider's first config apply retries an unreachable node silently until its timeout;
// created before it, this shows the wait under the node's own row while it lasts.
type Reachable struct{}

// ReachableArgs is the node to wait for.
type ReachableArgs struct {
	Node    string `pulumi:"node"`
	Address string `pulumi:"address"`
	Port    int    `pulumi:"port,optional"`
	Timeout string `pulumi:"timeout,optional"`
}

// ReachableState is the declaration.
type ReachableState struct {
	ReachableArgs
}

var (
	_ infer.CustomResource[ReachableArgs, ReachableState] = Reachable{}
	_ infer.CustomCheck[ReachableArgs]                    = Reachable{}
	_ infer.CustomUpdate[ReachableArgs, ReachableState]   = Reachable{}
	_ infer.CustomRead[ReachableArgs, ReachableState]     = Reachable{}
	_ infer.CustomDelete[ReachableState]                  = Reachable{}
)

// Annotate describes the resource.
func (r *Reachable) Annotate(a infer.Annotator) {
	a.Describe(r, "Waits, when created or when the node's address changes, until a node accepts TCP connections on the Talos API port, "+
		"showing every few seconds the node, its address and port, the last error and the time left. Reads and deletes touch nothing.")
}

// Annotate describes the inputs.
func (a *ReachableArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Node, "The node's name in the stack, for the messages.")
	an.Describe(&a.Address, "The node's address (IP or DNS name).")
	an.Describe(&a.Port, "The Talos API port. Default 50000.")
	an.Describe(&a.Timeout, "How long to wait (a Go duration). Default 10m.")
	an.SetDefault(&a.Port, TalosAPIPort)
	an.SetDefault(&a.Timeout, "10m")
}

// Check validates the declaration.
func (Reachable) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[ReachableArgs], error) {
	args, failures, err := infer.DefaultCheck[ReachableArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[ReachableArgs]{Inputs: args, Failures: failures}, err
	}
	fail := failWith(&failures)
	if addr, ok := req.NewInputs.GetOk("address"); ok && !addr.IsComputed() && args.Address == "" {
		fail("address", "the node's address is empty")
	}
	if args.Port <= 0 || args.Port > 65535 {
		fail("port", fmt.Sprintf("%d is not a TCP port (1-65535)", args.Port))
	}
	checkDuration(req.NewInputs, "timeout", args.Timeout, "10m", fail)
	return infer.CheckResponse[ReachableArgs]{Inputs: args, Failures: failures}, nil
}

// Create waits for the node.
func (Reachable) Create(ctx context.Context, req infer.CreateRequest[ReachableArgs]) (infer.CreateResponse[ReachableState], error) {
	state := ReachableState{ReachableArgs: req.Inputs}
	if req.DryRun {
		return infer.CreateResponse[ReachableState]{Output: state}, nil
	}
	if err := waitReachable(ctx, req.Inputs, progressSink(ctx)); err != nil {
		return infer.CreateResponse[ReachableState]{}, err
	}
	return infer.CreateResponse[ReachableState]{ID: req.Inputs.Node, Output: state}, nil
}

// Update waits again only when the node moved.
func (Reachable) Update(ctx context.Context, req infer.UpdateRequest[ReachableArgs, ReachableState]) (infer.UpdateResponse[ReachableState], error) {
	state := ReachableState{ReachableArgs: req.Inputs}
	if !req.DryRun && movedTo(req.State.ReachableArgs, req.Inputs) {
		if err := waitReachable(ctx, req.Inputs, progressSink(ctx)); err != nil {
			return infer.UpdateResponse[ReachableState]{}, err
		}
	}
	return infer.UpdateResponse[ReachableState]{Output: state}, nil
}

// Read keeps the state: a refresh must not wait on a node (NodeState reads it).
func (Reachable) Read(_ context.Context, req infer.ReadRequest[ReachableArgs, ReachableState]) (infer.ReadResponse[ReachableArgs, ReachableState], error) {
	return infer.ReadResponse[ReachableArgs, ReachableState]{ID: req.ID, Inputs: req.Inputs, State: req.State}, nil
}

// Delete does nothing.
func (Reachable) Delete(context.Context, infer.DeleteRequest[ReachableState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

func movedTo(old, new ReachableArgs) bool { return old.Address != new.Address || old.Port != new.Port }

func hostPort(a ReachableArgs) string { return net.JoinHostPort(a.Address, strconv.Itoa(a.Port)) }

func waitingFor(a ReachableArgs) string {
	return fmt.Sprintf("waiting for %s at %s to accept a connection on the Talos API", a.Node, hostPort(a))
}

// reachableSeen dials the node once: "" when it accepts, else what the attempt saw.
func reachableSeen(ctx context.Context, a ReachableArgs) (string, error) {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", hostPort(a))
	if err != nil {
		return "last attempt: " + err.Error(), nil
	}
	return "", conn.Close()
}

// waitReachable dials every second until the node accepts or the timeout passes; sink shows every
// failed attempt.
func waitReachable(ctx context.Context, a ReachableArgs, sink progress.Sink) error {
	timeout, err := positiveDuration("timeout", a.Timeout)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Node, err)
	}
	check := func(ctx context.Context) string {
		seen, _ := reachableSeen(ctx, a)
		return seen
	}
	if err := kube.Wait(ctx, timeout, time.Second, check, sink.Start(waitingFor(a), timeout).Seen); err != nil {
		return fmt.Errorf("%s at %s did not accept a connection on the Talos API (is the machine on, booted from the Talos image, and is %s its address?): %w",
			a.Node, hostPort(a), a.Address, err)
	}
	return nil
}
