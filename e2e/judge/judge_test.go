package judge

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 16, 51, 0, 0, time.UTC)

// steady is a report of a client that sent 40 queries a second for 60 s,
// every one answered.
func steady() Report {
	ps := make([]int, 61)
	for i := range ps {
		ps[i] = 40
	}
	ps[0], ps[60] = 10, 10
	return Report{Client: "udp, a socket per query", Sent: 2380, Answered: 2380, Started: t0, PerSecond: ps}
}

// failing is steady with fs as its failures.
func failing(fs ...Failure) Report {
	r := steady()
	r.Failed, r.Answered, r.Failures = len(fs), r.Sent-len(fs), fs
	for _, f := range fs {
		if f.Kind == KindWrong {
			r.Wrong++
		}
	}
	return r
}

var (
	worker  = Client{Kind: "socket", Node: "worker", Timeout: 2 * time.Second}
	deleted = t0.Add(10 * time.Second)
	ready   = deleted.Add(400 * time.Millisecond)
	gapEv   = Evidence{UpstreamDeleted: deleted, UpstreamReady: ready}
	upGap   = Scenarios["kube-dns-upstream deleted by hand"]
)

func fresh(at time.Time, kind string) Failure {
	return Failure{At: at, Name: "10-7-1-9.default.pod.cluster.local.", Kind: kind, Detail: "i/o timeout"}
}

func TestJudgePasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    Report
		s    Scenario
		ev   Evidence
	}{
		{"nothing failed", steady(), Scenarios["rollout restart"], Evidence{}},
		{"never-seen cluster names in the gap", failing(fresh(deleted.Add(100*time.Millisecond), KindTimeout), fresh(ready.Add(500*time.Millisecond), KindServfail)), upGap, gapEv},
		{"refused with Cilium's no-backend count on the node", failing(Failure{At: t0.Add(20 * time.Second), Name: "example.com.", Kind: KindRefused, Detail: "ECONNREFUSED"}),
			Scenarios["uninstall"], Evidence{NoBackend: map[string]int{"worker": 2}}},
		{"a timeout the node's DNS proxy logged", failing(Failure{At: t0.Add(20 * time.Second), Name: "r4-9.example.com", Kind: KindTimeout}),
			Scenarios["rollout restart"], Evidence{ProxyTimeouts: []ProxyTimeout{{Node: "worker", Name: "R4-9.example.com.", At: t0.Add(30 * time.Second)}}}},
		{"by design", failing(Failure{At: t0, Name: "example.com.", Kind: KindTimeout}, Failure{At: t0, Name: "example.com.", Kind: KindRefused}),
			Scenarios["uninstall"].WithByDesign("the policies go with the DaemonSet"), Evidence{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if v := Judge(tc.r, nil, worker, tc.s, tc.ev); !v.Passed() {
				t.Errorf("failed: %q", v.Fail)
			}
		})
	}
}

// TestJudgeFails: each report a broken product (or a broken harness) would
// produce must fail, naming why.
func TestJudgeFails(t *testing.T) {
	t.Parallel()
	stalled := steady()
	for i := 20; i < 24; i++ {
		stalled.PerSecond[i] = 0
	}
	stalled.Sent -= 160
	stalled.Answered -= 160
	slow := steady()
	slow.PerSecond = append([]int{10, 40, 40}, make([]int, 58)...)
	for i := 3; i < 61; i++ {
		slow.PerSecond[i] = 15
	}
	slow.Sent, slow.Answered = 960, 960
	cached := fresh(deleted.Add(100*time.Millisecond), KindTimeout)
	cached.Name = "kubernetes.default.svc.cluster.local."
	var eleven []Failure
	for i := range 11 {
		eleven = append(eleven, fresh(deleted.Add(time.Duration(i)*10*time.Millisecond), KindTimeout))
	}
	refused := Failure{At: t0.Add(20 * time.Second), Name: "example.com.", Kind: KindRefused, Detail: "ECONNREFUSED"}
	timeout := Failure{At: t0.Add(20 * time.Second), Name: "example.com.", Kind: KindTimeout}
	unlisted := failing(refused)
	unlisted.Failed, unlisted.Answered = 2, unlisted.Answered-1
	for _, tc := range []struct {
		name string
		r    Report
		err  error
		s    Scenario
		ev   Evidence
		want string
	}{
		{"a wrong answer, even by design", failing(Failure{At: t0, Name: "example.com.", Kind: KindWrong, Detail: "answer 10.1.1.1"}),
			nil, Scenarios["uninstall"].WithByDesign("x"), Evidence{}, "wrong"},
		{"the client's run failed", steady(), errors.New("exec: pod gone"), Scenarios["rollout restart"], Evidence{}, "pod gone"},
		{"a stall", stalled, nil, Scenarios["rollout restart"], Evidence{}, "stalled"},
		{"too slow after the action", slow, nil, Scenarios["rollout restart"], Evidence{}, "want at least"},
		{"no timeline", Report{Sent: 10, Answered: 10}, nil, Scenarios["rollout restart"], Evidence{}, "timeline"},
		{"a cached name in the gap (serve_stale broken)", failing(cached), nil, upGap, gapEv, "not a never-seen cluster name"},
		{"a never-seen name before the deletion", failing(fresh(deleted.Add(-time.Second), KindTimeout)), nil, upGap, gapEv, "outside the gap"},
		{"a never-seen name well after ready endpoints", failing(fresh(ready.Add(3*time.Second), KindTimeout)), nil, upGap, gapEv, "outside the gap"},
		{"refused in the gap", failing(fresh(deleted.Add(100*time.Millisecond), KindRefused)), nil, upGap, gapEv, "not a timeout or SERVFAIL"},
		{"more than the gap's cap", failing(eleven...), nil, upGap, gapEv, "more than 10"},
		{"the gap outside its scenario", failing(fresh(deleted.Add(100*time.Millisecond), KindTimeout)), nil, Scenarios["rollout restart"], gapEv, "not excused"},
		{"refused with no no-backend count", failing(refused), nil, Scenarios["uninstall"], Evidence{NoBackend: map[string]int{"other-node": 3}}, "counted no missing backend"},
		{"more refusals than the cap", failing(refused, refused, refused, refused, refused, refused), nil, Scenarios["uninstall"], Evidence{NoBackend: map[string]int{"worker": 9}}, "more than 5"},
		{"a proxy log line of another name", failing(timeout), nil, Scenarios["rollout restart"],
			Evidence{ProxyTimeouts: []ProxyTimeout{{Node: "worker", Name: "kubernetes.default.svc.cluster.local.", At: t0.Add(30 * time.Second)}}}, "logged example.com."},
		{"a stale proxy log line", failing(timeout), nil, Scenarios["rollout restart"],
			Evidence{ProxyTimeouts: []ProxyTimeout{{Node: "worker", Name: "example.com.", At: t0.Add(-6 * time.Hour)}}}, "logged example.com."},
		{"a proxy log line from another node", failing(timeout), nil, Scenarios["rollout restart"],
			Evidence{ProxyTimeouts: []ProxyTimeout{{Node: "control-plane", Name: "example.com.", At: t0.Add(25 * time.Second)}}}, "no agent on worker"},
		{"a proxy log line long after", failing(timeout), nil, Scenarios["rollout restart"],
			Evidence{ProxyTimeouts: []ProxyTimeout{{Node: "worker", Name: "example.com.", At: t0.Add(60 * time.Second)}}}, "no agent on worker"},
		{"failures not listed", unlisted, nil, Scenarios["uninstall"], Evidence{NoBackend: map[string]int{"worker": 2}}, "not listed"},
		{"SERVFAIL in a rollout", failing(Failure{At: t0, Name: "example.com.", Kind: KindServfail}), nil, Scenarios["rollout restart"], Evidence{}, "not excused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := Judge(tc.r, tc.err, worker, tc.s, tc.ev)
			if v.Passed() || !strings.Contains(strings.Join(v.Fail, "; "), tc.want) {
				t.Errorf("Judge = %q, want a failure with %q", v.Fail, tc.want)
			}
		})
	}
}

func TestJudgeBoundsLibraries(t *testing.T) {
	t.Parallel()
	r := steady()
	r.Slow = SlowCap + 1
	if v := Judge(r, nil, Client{Kind: "glibc", Library: true}, Scenarios["rollout restart"], Evidence{}); v.Passed() {
		t.Errorf("%d slow answers passed", r.Slow)
	}
	r.Slow, r.Resent = 1, ResentCap+1
	if v := Judge(r, nil, worker, Scenarios["rollout restart"], Evidence{}); v.Passed() {
		t.Errorf("%d resent queries passed", r.Resent)
	}
	// A cache closing a kept connection after its 100 queries: 40 resends
	// in 2,380 queries are that; 80 are not.
	r.Resent, r.ResentAfter = 40, map[string]int{ServerClosed: 40}
	if v := Judge(r, nil, worker, Scenarios["rollout restart"], Evidence{}); !v.Passed() {
		t.Errorf("40 resends after server closes in %d queries: %q", r.Sent, v.Fail)
	}
	r.Resent, r.ResentAfter = 80, map[string]int{ServerClosed: 80}
	if v := Judge(r, nil, worker, Scenarios["rollout restart"], Evidence{}); v.Passed() {
		t.Errorf("80 resends after server closes in %d queries passed", r.Sent)
	}
	r.Resent, r.ResentAfter = 3, nil
	v := Judge(r, nil, worker, Scenarios["rollout restart"], Evidence{})
	if !v.Passed() || len(v.Notes) != 2 {
		t.Errorf("1 slow, 3 resent: %q %q; want a pass with both noted", v.Fail, v.Notes)
	}
}

func TestFreshClusterName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"10-7-1-9.default.pod.cluster.local.":   true,
		"10-7-1-9.default.pod.cluster.local":    true,
		"kubernetes.default.svc.cluster.local.": false,
		"10-7-1-9.example.com.":                 false,
		"x10-7-1-9.default.pod.cluster.local.":  false,
	} {
		if got := FreshClusterName(name); got != want {
			t.Errorf("FreshClusterName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestPaceOfASparseClient: a client asking every 5 s is held to that, not
// to its first seconds, and stalls only after two intervals of silence.
func TestPaceOfASparseClient(t *testing.T) {
	t.Parallel()
	ps := make([]int, 31)
	for i := 0; i < 31; i += 5 {
		ps[i] = 1
	}
	r := Report{Sent: 7, Answered: 7, Started: t0, PerSecond: ps}
	if got := Pace(r, 5*time.Second); len(got) != 0 {
		t.Errorf("one every 5 s: %q", got)
	}
	if got := Pace(r, 20*time.Millisecond); len(got) == 0 {
		t.Error("held to a 20 ms pace, a query every 5 s passed")
	}
	quiet := slices.Clone(ps)
	quiet[10], quiet[15], quiet[20] = 0, 0, 0
	if got := Pace(Report{Sent: 4, Answered: 4, Started: t0, PerSecond: quiet}, 5*time.Second); len(got) == 0 {
		t.Error("15 s without a query, asking every 5 s: passed")
	}
}
