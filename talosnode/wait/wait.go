// Package wait is the provider's one poll-until-deadline loop, after Talos' pkg/conditions
// (PollingCondition: an assertion asked every interval, each attempt bounded, the last answer kept
// for the message): a node coming back from a reboot, etcd turning healthy, the API server's
// /readyz. Every wait of node, kube and rollout runs through Poll.Until, so they agree on what a
// timeout says and on which answer it quotes.
package wait

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Check is one attempt: done when the wait is over; seen is what it found, for progress and for
// the error when the time runs out; an error is an answer waiting does not change (a refused
// credential) and ends the wait at once.
type Check func(ctx context.Context) (done bool, seen string, err error)

// Poll is how a wait asks.
type Poll struct {
	// Timeout bounds the whole wait.
	Timeout time.Duration
	// Interval is the pause after a failed attempt. With MaxInterval above it, each pause doubles
	// up to MaxInterval (a node that is installing is asked often at first, rarely later).
	Interval, MaxInterval time.Duration
	// Attempt bounds one attempt, so a peer that accepts a connection and hangs is asked again
	// rather than holding the wait; 0 leaves only the Timeout.
	Attempt time.Duration
	// Progress, when not nil, gets what each attempt saw while the wait lasts (not the attempt
	// the deadline cut short).
	Progress func(seen string)
}

// Expired is a wait that ended without the check done: its Timeout passed (Err is
// context.DeadlineExceeded) or the caller cancelled it (context.Canceled).
type Expired struct {
	Timeout time.Duration
	// Elapsed is how long the wait lasted.
	Elapsed time.Duration
	// Seen is what the last attempt saw; the attempt the deadline cut short says less than the one
	// before it ("context deadline exceeded"), so it is quoted only when it was the first.
	Seen string
	Err  error
}

// Error reads after what was waited for: "not ready within 15m0s: <seen>", or "not ready before
// the wait was cancelled (after 3s): <seen>".
func (e *Expired) Error() string {
	if errors.Is(e.Err, context.Canceled) {
		return fmt.Sprintf("before the wait was cancelled (after %s): %s", e.Elapsed.Round(time.Millisecond), e.Seen)
	}
	return fmt.Sprintf("within %s: %s", e.Timeout, e.Seen)
}

func (e *Expired) Unwrap() error { return e.Err }

// Until asks check until it is done, returns an error, or the Timeout passes (or ctx ends). It
// returns what the last attempt saw and nil when done, check's error as is, or an *Expired.
func (p Poll) Until(ctx context.Context, check Check) (string, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	interval := p.Interval
	seen, asked := "", false
	for {
		attemptCtx, attemptCancel := ctx, context.CancelFunc(func() {})
		if p.Attempt > 0 {
			attemptCtx, attemptCancel = context.WithTimeout(ctx, p.Attempt)
		}
		done, s, err := check(attemptCtx)
		attemptCancel()
		if err != nil || done {
			return s, err
		}
		// An attempt the deadline cut short: a dial reports "i/o timeout" at the deadline itself,
		// a moment before ctx.Err() is set, so the clock decides too.
		cut := ctx.Err() != nil || !time.Now().Before(deadline)
		if !asked || !cut {
			seen, asked = s, true
		}
		if p.Progress != nil && !cut {
			p.Progress(s)
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return seen, &Expired{Timeout: p.Timeout, Elapsed: time.Since(start), Seen: seen, Err: ctx.Err()}
		case <-timer.C:
		}
		if p.MaxInterval > interval {
			interval = min(interval*2, p.MaxInterval)
		}
	}
}
