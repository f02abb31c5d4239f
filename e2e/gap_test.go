//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// TestFailuresInGap: only cluster-domain names, sent inside the window, all
// of them listed, pass as the upstream gap; make test runs it.
func TestFailuresInGap(t *testing.T) {
	from := time.Date(2026, 12, 5, 17, 32, 23, 200_000_000, time.UTC)
	to := from.Add(4 * time.Second)
	for _, f := range []string{
		"Dec  5 17:32:24.372029 10-219-1-16.default.pod.cluster.local.: read udp 10.244.0.111:45910->10.96.0.10:53: i/o timeout", // lrpdns probe
		"2026-12-05T17:32:24.293Z 10-194-1-56.default.pod.cluster.local: ESERVFAIL",                                              // Node.js
		"17:32:24.293 10-1-1-1.default.pod.cluster.local: no answer",                                                             // getent
		"Dec  5 17:32:25.065448 kubernetes.default.svc.cluster.local.: read tcp 10.244.0.125:54380->10.96.0.10:53: i/o timeout",  // TTL ran out
	} {
		if not := failuresInGap(probeResult{Failed: 1, Failures: []string{f}}, from, to); not != "" {
			t.Errorf("refused: %s: %s", f, not)
		}
	}
	for _, f := range []string{
		"Dec  5 17:32:29.372029 10-219-1-16.default.pod.cluster.local.: i/o timeout", // after the window
		"Dec  5 17:32:22.372029 10-219-1-16.default.pod.cluster.local.: i/o timeout", // before it
		"Dec  5 17:32:24.372029 www.example.com.: i/o timeout",                       // external
		"10-219-1-16.default.pod.cluster.local.: i/o timeout",                        // no time
	} {
		if failuresInGap(probeResult{Failed: 1, Failures: []string{f}}, from, to) == "" {
			t.Errorf("accepted: %s", f)
		}
	}
	in := "Dec  5 17:32:24.372029 1-1-1-1.default.pod.cluster.local.: i/o timeout"
	if failuresInGap(probeResult{Failed: 11, Failures: []string{in}}, from, to) == "" {
		t.Error("accepted 11 failures with one listed")
	}
	if failuresInGap(probeResult{Failed: 1, Wrong: 1, Failures: []string{in}}, from, to) == "" {
		t.Error("accepted a wrong answer")
	}
}
