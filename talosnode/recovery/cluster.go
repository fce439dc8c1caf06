package recovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
	"talos-cluster/talosnode/wait"
)

// Seen is what one control plane says of its etcd.
type Seen struct {
	Target node.Target
	// Service is the etcd service's state in ServiceList (Preparing, Running, Failed, ...); ""
	// when the node lists no etcd service.
	Service string
	// Healthy is an EtcdStatus answer with a leader and no errors.
	Healthy bool
	// Status is what EtcdStatus answered: "leader 1a2b, no errors", or its error.
	Status string
	// Err is set when the node could not be asked (it does not answer, refuses the credential).
	Err error
}

// waiting is true for an etcd with no data that waits for the bootstrap or to join: Talos'
// etcd service runs its pre-state (Preparing) until either comes; before that it waits for its
// conditions (Initialized, Waiting). A data directory that holds a member starts etcd instead.
func (s Seen) waiting() bool {
	switch s.Service {
	case "Initialized", "Waiting", "Preparing":
		return true
	}
	return false
}

func (s Seen) describe() string {
	if s.Service == "" {
		return "no etcd service listed"
	}
	return fmt.Sprintf("etcd %s (%s)", s.Service, s.Status)
}

// Action is what the recovery does with the cluster as seen.
type Action int

const (
	// Recover: every control plane's etcd is empty and waits for the bootstrap.
	Recover Action = iota
	// NotNeeded: etcd runs with a leader on every control plane that is not still joining it.
	NotNeeded
)

// Judge decides from what every control plane said. It refuses (an error naming the control
// planes) when one cannot be asked, or when one keeps etcd data while etcd has no healthy leader
// there: a bootstrap from the snapshot next to it would found a second cluster, and Talos refuses
// the recovery on a node whose data directory is not empty anyway.
func Judge(cps []Seen) (Action, error) {
	var unasked, kept []string
	waiting := 0
	for _, s := range cps {
		switch {
		case s.Err != nil:
			unasked = append(unasked, fmt.Sprintf("%s: %v", s.Target, s.Err))
		case s.waiting():
			waiting++
		case s.Service != "Running" || !s.Healthy:
			kept = append(kept, fmt.Sprintf("%s: %s", s.Target, s.describe()))
		}
	}
	switch {
	case len(unasked) > 0:
		return 0, fmt.Errorf("cannot tell whether etcd is empty on every control plane; the recovery needs each to answer: %s", strings.Join(unasked, "; "))
	case len(kept) > 0:
		return 0, fmt.Errorf("etcd still has data on %s; recover only once every control plane's etcd is wiped and waits for the bootstrap "+
			"(talosctl -n <address> reset --graceful=false --reboot --system-labels-to-wipe=EPHEMERAL on each), or remove recover.snapshot",
			strings.Join(kept, "; "))
	case waiting == len(cps):
		return Recover, nil
	}
	return NotNeeded, nil
}

// Ask reads one control plane's etcd: its service state, and when it runs, its status.
func Ask(ctx context.Context, t node.Target, creds node.Credentials) Seen {
	seen := Seen{Target: t}
	c, err := node.Dial(ctx, t, creds)
	if err != nil {
		seen.Err = err
		return seen
	}
	defer c.Close() //nolint:errcheck
	services, err := c.ServiceList(ctx)
	if err != nil {
		seen.Err = fmt.Errorf("service list: %s", node.Describe(err))
		return seen
	}
	for _, m := range services.GetMessages() {
		for _, svc := range m.GetServices() {
			if svc.GetId() == "etcd" {
				seen.Service = svc.GetState()
			}
		}
	}
	if seen.Service != "Running" {
		return seen
	}
	st, err := c.EtcdStatus(ctx)
	if err != nil {
		seen.Status = node.Describe(err)
		return seen
	}
	for _, m := range st.GetMessages() {
		ms := m.GetMemberStatus()
		switch {
		case len(ms.GetErrors()) > 0:
			seen.Status = strings.Join(ms.GetErrors(), "; ")
		case ms.GetLeader() == 0:
			seen.Status = "no leader"
		default:
			seen.Status, seen.Healthy = fmt.Sprintf("leader %x", ms.GetLeader()), true
		}
	}
	return seen
}

// AskAll asks every control plane, each within attempt.
func AskAll(ctx context.Context, cps []node.Target, creds node.Credentials, attempt time.Duration) []Seen {
	out := make([]Seen, len(cps))
	done := make(chan struct{})
	for i, t := range cps {
		go func() {
			defer func() { done <- struct{}{} }()
			callCtx, cancel := context.WithTimeout(ctx, attempt)
			defer cancel()
			out[i] = Ask(callCtx, t, creds)
		}()
	}
	for range cps {
		<-done
	}
	return out
}

// Error is a failed step of the recovery on one node.
type Error struct {
	Target node.Target
	Phase  string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("recover etcd on %s: %s: %s", e.Target, e.Phase, node.Describe(e.Err))
}

func (e *Error) Unwrap() error { return e.Err }

// notYet is an answer that waiting changes: the node is down or rebooting, its etcd has not
// reached the pre-state that takes a snapshot ("etcd service is not ready for recovery yet"), or
// Talos is not ready to bootstrap ("bootstrap is not available yet", "time is not in sync yet").
func notYet(err error) bool {
	rerr := &node.Error{Err: err}
	if rerr.NotAnswering() {
		return true
	}
	return status.Code(err) == codes.FailedPrecondition &&
		!strings.Contains(status.Convert(err).Message(), "control plane")
}

// Restore uploads the snapshot to the bootstrap control plane (EtcdRecover) and bootstraps etcd
// from it (Bootstrap with recover_etcd; etcd checks the snapshot's hash), as talosctl bootstrap
// --recover-from does. Answers that waiting changes are asked again until timeout, with sink
// showing where it stands; any other answer ends it, naming the node and the step.
func Restore(ctx context.Context, t node.Target, creds func() node.Credentials, snapshot Snapshot, timeout time.Duration, sink progress.Sink) error {
	step := func(phase, what string, call func(ctx context.Context) error) error {
		w := sink.Start(fmt.Sprintf("%s %s", what, t.Where()), timeout)
		poll := wait.Poll{Timeout: timeout, Interval: 500 * time.Millisecond, MaxInterval: 5 * time.Second, Progress: w.Seen}
		var last error
		_, err := poll.Until(ctx, func(ctx context.Context) (bool, string, error) {
			last = call(ctx)
			switch {
			case last == nil:
				return true, "", nil
			case notYet(last):
				return false, node.Describe(last), nil
			}
			return false, "", last
		})
		var expired *wait.Expired
		if errors.As(err, &expired) && last != nil {
			err = fmt.Errorf("%w (still %s)", expired, node.Describe(last))
		}
		if err != nil {
			return &Error{Target: t, Phase: phase, Err: err}
		}
		return nil
	}
	if err := step("EtcdRecover (the snapshot's upload)", "uploading the snapshot to", func(ctx context.Context) error {
		c, err := node.Dial(ctx, t, creds())
		if err != nil {
			return err
		}
		defer c.Close() //nolint:errcheck
		f, err := os.Open(snapshot.Path)
		if err != nil {
			return fmt.Errorf("open %s: %w", snapshot.Path, err)
		}
		defer f.Close() //nolint:errcheck
		_, err = c.EtcdRecover(ctx, f)
		return err
	}); err != nil {
		return err
	}
	return step("Bootstrap with recover_etcd", "bootstrapping etcd from the snapshot on", func(ctx context.Context) error {
		c, err := node.Dial(ctx, t, creds())
		if err != nil {
			return err
		}
		defer c.Close() //nolint:errcheck
		return c.Bootstrap(ctx, &machine.BootstrapRequest{RecoverEtcd: true})
	})
}

// WaitHealthy waits until every control plane runs etcd with a leader: the bootstrap one from the
// snapshot, the others once they joined it.
func WaitHealthy(ctx context.Context, cps []node.Target, creds func() node.Credentials, timeout time.Duration, sink progress.Sink) error {
	names := make([]string, len(cps))
	for i, t := range cps {
		names[i] = t.Name
	}
	w := sink.Start("waiting for etcd to run with a leader on "+strings.Join(names, ", "), timeout)
	poll := wait.Poll{Timeout: timeout, Interval: 500 * time.Millisecond, MaxInterval: 5 * time.Second, Progress: w.Seen}
	_, err := poll.Until(ctx, func(ctx context.Context) (bool, string, error) {
		var behind []string
		for _, s := range AskAll(ctx, cps, creds(), 10*time.Second) {
			switch {
			case s.Err != nil:
				behind = append(behind, fmt.Sprintf("%s: %v", s.Target, s.Err))
			case s.Service != "Running" || !s.Healthy:
				behind = append(behind, fmt.Sprintf("%s: %s", s.Target, s.describe()))
			}
		}
		return len(behind) == 0, strings.Join(behind, "; "), nil
	})
	if err != nil {
		return fmt.Errorf("after the recovery, etcd did not run with a leader on every control plane %w", err)
	}
	return nil
}
