package judge

import (
	"fmt"
	"strings"
	"time"
)

// Pacing: what a client that is not stalled does.
const (
	// Baseline is how long clients run before the scenario's action: their
	// pace then is what the rest is held to.
	Baseline = 3 * time.Second
	// MinPace: the share of the baseline pace a client must keep over the
	// scenario (a client that waits out timeouts slows down; one that
	// stops is caught).
	MinPace = 0.5
	// StallSeconds: this many whole seconds in a row with nothing sent is
	// a stall.
	StallSeconds = 3
	// SlowCap: answers after a second or more (a library's retry: its
	// first try was lost) a client may have in a scenario.
	SlowCap = 5
	// ResentCap: queries a client may send again on a new socket after the
	// kept one failed (socket load balancing terminating it, a connection
	// reset), in a scenario.
	ResentCap = 30
	// ServerCloseEvery: a cache closes a kept TCP connection after its
	// --max-tcp-queries (100 in manifests/): one close per this many queries
	// is that, and its resends are not counted against ResentCap.
	ServerCloseEvery = 50
)

// ServerClosed is the client's name for a kept TCP connection the server
// closed (ResentAfter's key).
const ServerClosed = "closed by the server (EOF)"

// Verdict is the judgement of one client's report in a scenario.
type Verdict struct {
	// Fail lists why the client fails the scenario; empty: it passes.
	Fail []string
	// Notes says what was measured and excused.
	Notes []string
}

// Passed reports whether nothing failed.
func (v Verdict) Passed() bool { return len(v.Fail) == 0 }

// Judge judges one client's report r (clientErr: the client's run failed
// other than by failed queries) in scenario s with evidence ev.
func Judge(r Report, clientErr error, c Client, s Scenario, ev Evidence) Verdict {
	var v Verdict
	fail := func(format string, args ...any) { v.Fail = append(v.Fail, fmt.Sprintf(format, args...)) }
	note := func(format string, args ...any) { v.Notes = append(v.Notes, fmt.Sprintf(format, args...)) }
	if clientErr != nil {
		fail("the client failed: %v", clientErr)
	}
	if r.Answered+r.Failed != r.Sent {
		fail("%d sent, but %d answered and %d failed", r.Sent, r.Answered, r.Failed)
	}
	if r.Wrong > 0 {
		fail("%d wrong answers", r.Wrong)
	}
	byDesign := false
	for _, a := range s.Allow {
		if _, ok := a.(ByDesign); ok {
			byDesign = true
		}
	}
	if !byDesign {
		v.Fail = append(v.Fail, Pace(r, c.Interval)...)
	}
	if r.Slow > 0 {
		note("%d answered after a second or more (a retry inside the library)", r.Slow)
		if r.Slow > SlowCap {
			fail("%d answers took a second or more: more than %d retried queries", r.Slow, SlowCap)
		}
	}
	if r.Resent > 0 {
		note("%d sent again on a new socket after the kept one failed: %v", r.Resent, r.ResentAfter)
		closes := min(r.ResentAfter[ServerClosed], r.Sent/ServerCloseEvery)
		if r.Resent-closes > ResentCap {
			fail("%d queries sent again on a new socket (%d after the server closed a connection it had served, one per %d queries at most): more than %d",
				r.Resent, closes, ServerCloseEvery, ResentCap)
		}
	}
	if r.Failed == 0 {
		return v
	}
	if r.Failed > len(r.Failures) {
		fail("%d failed, %d listed: failures not listed cannot be judged", r.Failed, len(r.Failures))
		return v
	}
	used := map[string]int{}
	for _, f := range r.Failures {
		if f.Kind == KindWrong {
			fail("wrong answer: %s", f)
			continue
		}
		var whyNot []string
		excused := false
		for _, a := range s.Allow {
			if why := a.Covers(f, c, ev); why != "" {
				whyNot = append(whyNot, a.Name()+": "+why)
				continue
			}
			if used[a.Name()] >= a.Cap() {
				whyNot = append(whyNot, fmt.Sprintf("%s: more than %d", a.Name(), a.Cap()))
				continue
			}
			used[a.Name()]++
			excused = true
			break
		}
		if !excused {
			if len(whyNot) == 0 {
				fail("failed: %s; this scenario excuses nothing", f)
			} else {
				fail("failed: %s; not excused (%s)", f, strings.Join(whyNot, "; "))
			}
		}
	}
	for _, a := range s.Allow {
		if n := used[a.Name()]; n > 0 {
			note("%d failed, excused as %s", n, a.Name())
		}
	}
	return v
}

// Pace says why r's timeline shows a client that stalled or slowed below
// MinPace of its pace before the action; nil when it kept up. A client
// that pauses a second or more between queries (interval) is held to
// MinPace of one query per interval instead, and stalls when it sends
// nothing for two intervals.
func Pace(r Report, interval time.Duration) []string {
	ps := r.PerSecond
	base := int(Baseline / time.Second)
	if len(ps) < base+2 {
		return []string{fmt.Sprintf("a timeline of %d seconds: too short to judge the pace (want at least %d)", len(ps), base+2)}
	}
	if interval >= time.Second {
		return sparsePace(r, interval)
	}
	// Second 0 is partial; seconds 1 to Baseline-1 are before the action.
	sum := 0
	for _, n := range ps[1:base] {
		sum += n
	}
	pace := float64(sum) / float64(base-1)
	if pace == 0 {
		return []string{"nothing sent in the seconds before the action"}
	}
	var out []string
	// The last second is partial too.
	want := MinPace * pace * float64(len(ps)-1)
	if float64(r.Sent) < want {
		out = append(out, fmt.Sprintf("%d sent over %d s, want at least %.0f (%.0f%% of its pace before the action, %.1f/s)",
			r.Sent, len(ps), want, MinPace*100, pace))
	}
	for _, at := range stalls(r, 1, StallSeconds) {
		out = append(out, fmt.Sprintf("stalled: nothing sent for %d s from %s", StallSeconds, clockOf(at)))
	}
	return out
}

// stalls are the starts of the runs of `seconds` whole seconds with
// nothing sent in r's timeline from second `from` on (the last second is
// partial and not counted).
func stalls(r Report, from, seconds int) []time.Time {
	var at []time.Time
	run := 0
	for i := from; i < len(r.PerSecond)-1; i++ {
		if r.PerSecond[i] > 0 {
			run = 0
			continue
		}
		run++
		if run == seconds {
			at = append(at, r.Started.Add(time.Duration(i+1-seconds)*time.Second))
		}
	}
	return at
}

// sparsePace is Pace for a client with a pause of interval (a second or
// more) between queries.
func sparsePace(r Report, interval time.Duration) []string {
	var out []string
	d := time.Duration(len(r.PerSecond)-1) * time.Second
	want := MinPace * float64(d/interval)
	if float64(r.Sent) < want {
		out = append(out, fmt.Sprintf("%d sent over %v, want at least %.0f (%.0f%% of one every %v)", r.Sent, d, want, MinPace*100, interval))
	}
	gap := int(2*interval/time.Second) + 1
	for _, at := range stalls(r, 0, gap) {
		out = append(out, fmt.Sprintf("stalled: nothing sent for %d s from %s (one query every %v)", gap, clockOf(at), interval))
	}
	return out
}
