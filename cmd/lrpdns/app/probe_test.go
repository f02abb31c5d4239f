package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

func TestProbeCountsAnswersAndFailures(t *testing.T) {
	t.Parallel()
	s, err := dnstest.Start(dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "6", "--interval", "0s", "a.example.com", "b.example.com"}
	if err := Run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("probe: %v\n%s", err, out.String())
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 6 || rep.Answered != 6 || rep.Answers["192.0.2.7"] != 6 || s.Count() != 6 || len(s.QueriesFor("b.example.com")) != 3 {
		t.Errorf("report %+v, server saw %d; want 6 answered, round robin", rep, s.Count())
	}

	s.Close() // now every query fails
	out.Reset()
	args[2] = s.Addr.String()
	args = append(args[:len(args)-2], "--timeout", "200ms", "a.example.com")
	err = Run(context.Background(), args, &out, io.Discard)
	if !errors.Is(err, ErrProbeFailed) {
		t.Fatalf("probe against a closed server: %v, want ErrProbeFailed", err)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Failed != 6 || len(rep.Failures) == 0 {
		t.Errorf("report %+v (%v), want 6 failures with reasons", rep, err)
	}
}

// TestProbeChecksAnswers: an answer that is not the expected one (a query
// that reached the wrong upstream) is a failure, and --fresh names are never
// the same twice.
func TestProbeChecksAnswers(t *testing.T) {
	t.Parallel()
	s, err := dnstest.Start(dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "9", "--interval", "0s", "--fresh", "default.pod.cluster.local",
		"right.example.com=192.0.2.7", "wrong.example.com=198.51.100.53"}
	err = Run(context.Background(), args, &out, io.Discard)
	if !errors.Is(err, ErrProbeFailed) {
		t.Fatalf("probe: %v, want ErrProbeFailed", err)
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	// 3 rounds: right (answered), wrong (failed), fresh (10.r.1.n: the test
	// server answers 192.0.2.7, so wrong too).
	if rep.Sent != 9 || rep.Answered != 3 || rep.Failed != 6 || rep.Wrong != 6 {
		t.Errorf("report %+v, want 9 sent, 3 answered, 6 wrong", rep)
	}
	var fresh []string
	for _, q := range s.Queries() {
		if strings.HasSuffix(q.Name, ".default.pod.cluster.local.") {
			fresh = append(fresh, q.Name)
		}
	}
	if len(fresh) != 3 || fresh[0] == fresh[1] || fresh[1] == fresh[2] {
		t.Errorf("fresh names %v, want 3 different ones", fresh)
	}
	if !strings.Contains(strings.Join(rep.Failures, "\n"), "want 198.51.100.53") {
		t.Errorf("failures %q do not say what was wanted", rep.Failures)
	}
}

func TestFreshNameSpellsItsAddress(t *testing.T) {
	t.Parallel()
	for n, want := range map[int][2]string{
		0:   {"10-7-1-1.default.pod.cluster.local.", "10.7.1.1"},
		253: {"10-7-1-254.default.pod.cluster.local.", "10.7.1.254"},
		254: {"10-7-2-1.default.pod.cluster.local.", "10.7.2.1"},
	} {
		if got := freshName("default.pod.cluster.local", 7, n); got.name != want[0] || got.want != want[1] {
			t.Errorf("freshName(%d) = %+v, want %v", n, got, want)
		}
	}
}

// TestProbeFreshExternalNames: --fresh-external adds a never-seen name under
// the suffix to each round, checked against the wanted answer.
func TestProbeFreshExternalNames(t *testing.T) {
	t.Parallel()
	s, err := dnstest.Start(dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "6", "--interval", "0s", "--fresh-external", "example.com=192.0.2.7", "a.example.org=192.0.2.7"}
	if err := Run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("probe: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	for _, q := range s.Queries() {
		if strings.HasSuffix(q.Name, ".example.com.") {
			seen[q.Name] = true
		}
	}
	if len(seen) != 3 {
		t.Errorf("never-seen external names %v, want 3 different ones in 3 rounds", seen)
	}
}

// TestProbeFlagAfterNames: the flag package stops at the first name, so a
// flag after one would be asked as a name; the probe refuses it.
func TestProbeFlagAfterNames(t *testing.T) {
	t.Parallel()
	err := Run(context.Background(), []string{"probe", "--count", "1", "a.example.com", "--fresh-external", "example.com"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `flag "--fresh-external" after the names`) {
		t.Errorf("error = %v, want the misplaced flag named", err)
	}
}
