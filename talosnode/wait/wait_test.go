package wait_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"talos-cluster/talosnode/wait"
)

func TestAWaitEndsWhenTheCheckIsDoneAndReportsEveryAttemptBefore(t *testing.T) {
	var progress []string
	attempts := 0
	seen, err := wait.Poll{Timeout: time.Hour, Interval: time.Millisecond, Progress: func(s string) { progress = append(progress, s) }}.
		Until(t.Context(), func(context.Context) (bool, string, error) {
			attempts++
			return attempts == 3, fmt.Sprintf("attempt %d", attempts), nil
		})
	if err != nil || seen != "attempt 3" {
		t.Fatalf("got %q, %v; want attempt 3 and no error", seen, err)
	}
	if want := []string{"attempt 1", "attempt 2"}; !slices.Equal(progress, want) {
		t.Fatalf("progress %q, want %q", progress, want)
	}
}

func TestAWaitPastItsDeadlineQuotesTheLastAttemptNotTheOneTheDeadlineCutShort(t *testing.T) {
	attempts := 0
	seen, err := wait.Poll{Timeout: 50 * time.Millisecond, Interval: time.Millisecond}.
		Until(t.Context(), func(ctx context.Context) (bool, string, error) {
			attempts++
			if attempts == 1 {
				return false, "version: Unavailable: connection refused", nil
			}
			// The second attempt hangs until the wait's deadline cuts it short.
			<-ctx.Done()
			return false, "version: DeadlineExceeded: context deadline exceeded", nil
		})
	var expired *wait.Expired
	if !errors.As(err, &expired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v (%T), want an *wait.Expired of context.DeadlineExceeded", err, err)
	}
	want := "within 50ms: version: Unavailable: connection refused"
	if err.Error() != want || seen != "version: Unavailable: connection refused" {
		t.Fatalf("got %q (seen %q)\nwant %q", err, seen, want)
	}
}

// A dial with a deadline fails ("i/o timeout") at the deadline itself, which can come a moment
// before the context reports it: the clock, not only ctx.Err(), says the attempt was cut short.
func TestAnAttemptEndingAtTheDeadlineBeforeTheContextSaysSoIsStillCutShort(t *testing.T) {
	attempts := 0
	var progress []string
	seen, err := wait.Poll{Timeout: 50 * time.Millisecond, Interval: time.Millisecond, Progress: func(s string) { progress = append(progress, s) }}.
		Until(t.Context(), func(ctx context.Context) (bool, string, error) {
			attempts++
			if attempts == 1 {
				return false, "dial tcp: connect: connection refused", nil
			}
			// As a socket's deadline does: wake at the deadline, without waiting for ctx.Done().
			deadline, _ := ctx.Deadline()
			time.Sleep(time.Until(deadline))
			return false, "dial tcp: i/o timeout", nil
		})
	if seen != "dial tcp: connect: connection refused" || !strings.HasSuffix(err.Error(), ": dial tcp: connect: connection refused") {
		t.Fatalf("got %v (seen %q), want the answer before the deadline", err, seen)
	}
	if slices.Contains(progress, "dial tcp: i/o timeout") {
		t.Errorf("progress %q shows the attempt the deadline cut short", progress)
	}
}

func TestAWaitWhoseOnlyAttemptTheDeadlineCutShortQuotesIt(t *testing.T) {
	_, err := wait.Poll{Timeout: 20 * time.Millisecond, Interval: time.Millisecond}.
		Until(t.Context(), func(ctx context.Context) (bool, string, error) {
			<-ctx.Done()
			return false, "hung: " + ctx.Err().Error(), nil
		})
	if want := "within 20ms: hung: context deadline exceeded"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestACancelledWaitEndsAtOnceSayingSo(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	attempts := 0
	// The caller gives up while the wait pauses (an hour) after the first attempt.
	progress := func(string) {
		if attempts == 1 {
			cancel()
		}
	}
	_, err := wait.Poll{Timeout: time.Hour, Interval: time.Hour, Progress: progress}.
		Until(ctx, func(context.Context) (bool, string, error) {
			attempts++
			return false, fmt.Sprintf("stage booting (attempt %d)", attempts), nil
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if !strings.HasPrefix(err.Error(), "before the wait was cancelled (after ") || !strings.HasSuffix(err.Error(), "): stage booting (attempt 1)") {
		t.Fatalf("got %q", err)
	}
	if attempts != 1 {
		t.Fatalf("%d attempts, want 1", attempts)
	}
}

func TestAnAnswerThatIsAnErrorEndsTheWaitAsIs(t *testing.T) {
	refused := errors.New("machine config: PermissionDenied")
	attempts := 0
	seen, err := wait.Poll{Timeout: time.Hour, Interval: time.Millisecond}.
		Until(t.Context(), func(context.Context) (bool, string, error) {
			attempts++
			if attempts == 2 {
				return false, "refused", refused
			}
			return false, "not answering", nil
		})
	if err != refused || seen != "refused" || attempts != 2 {
		t.Fatalf("got %q, %v after %d attempts; want refused, the check's own error, 2", seen, err, attempts)
	}
}

func TestEachAttemptIsBoundedSoAHungPeerIsAskedAgain(t *testing.T) {
	attempts := 0
	seen, err := wait.Poll{Timeout: time.Hour, Interval: time.Millisecond, Attempt: 10 * time.Millisecond}.
		Until(t.Context(), func(ctx context.Context) (bool, string, error) {
			attempts++
			if attempts == 1 {
				<-ctx.Done() // only the attempt's own bound ends this
				return false, "hung", nil
			}
			return true, "answered", nil
		})
	if err != nil || seen != "answered" || attempts != 2 {
		t.Fatalf("got %q, %v after %d attempts", seen, err, attempts)
	}
}
