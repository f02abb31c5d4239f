package clients

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/lrpdns/lrpdns/e2e/judge"
	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// report is the suite's report, which resolve.js prints as lrpdns probe
// does.
type report = judge.Report

// resolve runs resolve.js with args and returns its report and exit code.
func resolve(t *testing.T, args ...string) (report, int) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no Node.js (Debian package nodejs): the e2e suite's Node.js client is not tested here")
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(node, append([]string{"resolve.js"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r report
	if code != 2 {
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("report %q (stderr %q): %v", out.String(), stderr.String(), err)
		}
	}
	return r, code
}

// TestResolveJS: the script takes the suite's arguments as `lrpdns probe`
// does (Go durations, NAME=WANT, fresh names), checks each answer, and
// exits non-zero when a query failed.
func TestResolveJS(t *testing.T) {
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	r, code := resolve(t, "--server", s.Addr.String(), "--duration", "0m1s", "--interval", "10ms", "--inflight", "2",
		"--fresh-external", "example.org=192.0.2.7", "a.example.com=192.0.2.7")
	if code != 0 || r.Sent < 20 || r.Answered != r.Sent || r.Failed != 0 || r.Answers["fresh"] == 0 || r.Answers["192.0.2.7"] == 0 || !strings.Contains(r.Client, "c-ares") {
		t.Errorf("exit %d, report %+v; want every query answered, fresh names counted together", code, r)
	}
	fresh := 0
	for _, q := range s.Queries() {
		if strings.HasSuffix(q.Name, ".example.org.") {
			fresh++
		}
	}
	if fresh != r.Answers["fresh"] {
		t.Errorf("the server saw %d never-seen names, the report %d", fresh, r.Answers["fresh"])
	}

	// An answer that is not the one wanted is a failure.
	r, code = resolve(t, "--server", s.Addr.String(), "--duration", "200ms", "b.example.com=192.0.2.8")
	if code != 1 || r.Wrong == 0 || r.Failed != r.Sent || len(r.Failures) == 0 {
		t.Errorf("wrong answers: exit %d, report %+v; want every query failed as wrong", code, r)
	}
	for _, f := range r.Failures {
		if f.Kind != judge.KindWrong || f.Name != "b.example.com" || f.At.Before(r.Started) || !strings.Contains(f.Detail, "want 192.0.2.8") {
			t.Errorf("failure %+v, want b.example.com wrong, sent after %v, saying what was wanted", f, r.Started)
		}
	}
	if n := sumOf(r.PerSecond); n != r.Sent || len(r.PerSecond) == 0 {
		t.Errorf("per second %v, want the %d queries sent", r.PerSecond, r.Sent)
	}

	// No server: c-ares's ECONNREFUSED is a refused query.
	s.Close()
	r, code = resolve(t, "--server", s.Addr.String(), "--duration", "300ms", "c.example.com")
	if code != 1 || r.Failed == 0 || r.Failures[0].Kind != judge.KindRefused {
		t.Errorf("a closed port: exit %d, report %+v; want refused failures", code, r)
	}
	s = dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})

	// --fresh-external SUFFIX=spelled asks names that spell their address.
	r, code = resolve(t, "--server", s.Addr.String(), "--duration", "200ms", "--run", "7", "--fresh-external", "example.net=spelled")
	if code != 1 || r.Wrong == 0 || !strings.HasPrefix(r.Failures[0].Name, "10-7-1-") || !strings.Contains(r.Failures[0].Detail, "want 10.7.1.") {
		t.Errorf("spelled names against a server answering 192.0.2.7: exit %d, report %+v; want them wrong", code, r)
	}

	// --run sets the number in the never-seen names.
	before := len(s.Queries())
	if r, code = resolve(t, "--server", s.Addr.String(), "--duration", "200ms", "--run", "7", "--fresh-external", "example.net=192.0.2.7"); code != 0 || r.Answers["fresh"] == 0 {
		t.Errorf("--run 7: exit %d, report %+v", code, r)
	}
	for _, q := range s.Queries()[before:] {
		if !strings.HasPrefix(q.Name, "r7-") {
			t.Errorf("--run 7 asked %s, want r7-N.example.net.", q.Name)
		}
	}

	// Bad arguments are refused, with exit code 2.
	for _, args := range [][]string{{"--duration", "5x", "a"}, {"--bogus"}, {"--duration", "1s", "--inflight", "0", "a"}, {"--duration", "1s", "--run", "255", "a"}} {
		if _, code := resolve(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func sumOf(ns []int) int {
	n := 0
	for _, x := range ns {
		n += x
	}
	return n
}
