package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
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
