// Package progress reports a wait while it lasts: what it waits for, what the last attempt saw
// and how long is left before it gives up. A node that does not answer then shows in `pulumi up`
// under its resource within seconds, not only when the timeout (minutes) runs out.
package progress

import (
	"fmt"
	"time"
)

// Every is how often a wait shows where it stands; Keep how often a line is also kept in the
// record (the diagnostics `pulumi up` prints at the end), where one every 5 s of a 10-minute
// wait would bury the error that follows it.
const (
	Every = 5 * time.Second
	Keep  = 30 * time.Second
)

// Sink is where a wait's lines go. Status shows a line while the wait lasts (the provider
// logger's InfoStatus: the resource's row in `pulumi up`, one line each in a non-interactive
// run); Log keeps it (Info). Either may be nil. Now is the clock, time.Now when nil.
type Sink struct {
	Status func(string)
	Log    func(string)
	Now    func() time.Time
}

// Wait is one wait being reported. Make it with Start.
type Wait struct {
	sink     Sink
	what     string
	timeout  time.Duration
	deadline time.Time
	// shown is when a line last went to Status (zero before the first); kept when one last went
	// to Log, or the start.
	shown, kept time.Time
}

// Start begins reporting a wait for what (e.g. "waiting for cp-1 at 10.0.0.11:50000 to answer
// over mutual TLS") that gives up after timeout from now.
func (s Sink) Start(what string, timeout time.Duration) *Wait {
	if s.Now == nil {
		s.Now = time.Now
	}
	now := s.Now()
	return &Wait{sink: s, what: what, timeout: timeout, deadline: now.Add(timeout), kept: now}
}

// Seen reports what the last attempt saw. The first report is shown at once, later ones once
// Every has passed since the last shown. A line is kept once Keep has passed since the start or
// the last kept: a short wait (a reboot) leaves no trace in the record, a long one a line every
// Keep.
func (w *Wait) Seen(seen string) {
	now := w.sink.Now()
	show := w.shown.IsZero() || now.Sub(w.shown) >= Every
	keep := now.Sub(w.kept) >= Keep
	if !show && !keep {
		return
	}
	line := w.Line(now, seen)
	if show {
		w.shown = now
		if w.sink.Status != nil {
			w.sink.Status(line)
		}
	}
	if keep {
		w.kept = now
		if w.sink.Log != nil {
			w.sink.Log(line)
		}
	}
}

// Line is the report at now: "<what>: <seen>; 9m55s left of 10m0s".
func (w *Wait) Line(now time.Time, seen string) string {
	left := max(w.deadline.Sub(now), 0).Round(time.Second)
	return fmt.Sprintf("%s: %s; %s left of %s", w.what, seen, left, w.timeout)
}
