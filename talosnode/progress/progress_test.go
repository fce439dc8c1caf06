package progress_test

import (
	"slices"
	"testing"
	"time"

	"talos-cluster/talosnode/progress"
)

// clock is a fake clock the test moves by hand.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestAWaitIsShownAtOnceThenEveryFewSecondsAndKeptNowAndThen(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var shown, kept []string
	w := progress.Sink{
		Status: func(s string) { shown = append(shown, s) },
		Log:    func(s string) { kept = append(kept, s) },
		Now:    c.Now,
	}.Start("waiting for cp-1 at 10.0.0.11:50000", 2*time.Minute)

	// One attempt a second for 35 s.
	for i := range 36 {
		w.Seen("connection refused " + time.Duration(i*int(time.Second)).String())
		c.now = c.now.Add(time.Second)
	}
	wantShown := []string{
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 0s; 2m0s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 5s; 1m55s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 10s; 1m50s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 15s; 1m45s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 20s; 1m40s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 25s; 1m35s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 30s; 1m30s left of 2m0s",
		"waiting for cp-1 at 10.0.0.11:50000: connection refused 35s; 1m25s left of 2m0s",
	}
	if !slices.Equal(shown, wantShown) {
		t.Errorf("shown:\n%q\nwant\n%q", shown, wantShown)
	}
	// A wait shorter than Keep leaves nothing in the record; a longer one a line every Keep.
	wantKept := []string{"waiting for cp-1 at 10.0.0.11:50000: connection refused 30s; 1m30s left of 2m0s"}
	if !slices.Equal(kept, wantKept) {
		t.Errorf("kept:\n%q\nwant\n%q", kept, wantKept)
	}
}

func TestTheTimeLeftNeverGoesBelowZero(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var shown []string
	w := progress.Sink{Status: func(s string) { shown = append(shown, s) }, Now: c.Now}.Start("waiting", time.Second)
	c.now = c.now.Add(3 * time.Second)
	w.Seen("deadline exceeded")
	if want := []string{"waiting: deadline exceeded; 0s left of 1s"}; !slices.Equal(shown, want) {
		t.Fatalf("got %q, want %q", shown, want)
	}
}

func TestASinkWithoutFunctionsIsSilent(t *testing.T) {
	w := progress.Sink{}.Start("waiting", time.Minute)
	w.Seen("anything") // must not panic
}
