package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/miekg/dns"
)

// probeReport is what `lrpdns probe` prints.
type probeReport struct {
	Server   string         `json:"server"`
	Sent     int            `json:"sent"`
	Answered int            `json:"answered"`
	Failed   int            `json:"failed"`
	Failures []string       `json:"failures,omitempty"` // the first few
	Answers  map[string]int `json:"answers"`            // rcode or address -> count
}

// ErrProbeFailed is returned when any query failed.
var ErrProbeFailed = errors.New("probe: some queries failed")

// runProbe sends A queries for the names, round robin, until the duration
// or count is reached, and prints a JSON report. The e2e suites run it in a
// client pod, with the lrpdns image, during rollouts.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lrpdns probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "DNS server `IP[:PORT]`; default: the first nameserver of /etc/resolv.conf")
	tcp := fs.Bool("tcp", false, "query over TCP")
	interval := fs.Duration("interval", 20*time.Millisecond, "pause between queries")
	duration := fs.Duration("duration", 0, "stop after this long")
	count := fs.Int("count", 0, "stop after this many queries")
	timeout := fs.Duration("timeout", 2*time.Second, "per-query timeout (a timeout is a failure)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := fs.Args()
	if len(names) == 0 || (*duration <= 0 && *count <= 0) {
		return errors.New("probe: give NAME... and --duration or --count")
	}
	addr := *server
	if addr == "" {
		rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(rc.Servers) == 0 {
			return fmt.Errorf("probe: no --server and no nameserver in /etc/resolv.conf: %w", err)
		}
		addr = rc.Servers[0]
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	c := &dns.Client{Timeout: *timeout}
	if *tcp {
		c.Net = "tcp"
	}
	rep := probeReport{Server: addr, Answers: map[string]int{}}
	deadline := time.Now().Add(*duration)
	for i := 0; (*count <= 0 || i < *count) && (*duration <= 0 || time.Now().Before(deadline)); i++ {
		if ctx.Err() != nil {
			break
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(names[i%len(names)]), dns.TypeA)
		rep.Sent++
		r, _, err := c.ExchangeContext(ctx, m, addr)
		switch {
		case err != nil:
			rep.Failed++
			if len(rep.Failures) < 10 {
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", m.Question[0].Name, err))
			}
		case r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused:
			rep.Failed++
			rep.Answers[dns.RcodeToString[r.Rcode]]++
			if len(rep.Failures) < 10 {
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %s", m.Question[0].Name, dns.RcodeToString[r.Rcode]))
			}
		default:
			rep.Answered++
			key := dns.RcodeToString[r.Rcode]
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					key = a.A.String()
					break
				}
			}
			rep.Answers[key]++
		}
		time.Sleep(*interval)
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(rep); err != nil {
		return err
	}
	if rep.Failed > 0 {
		return ErrProbeFailed
	}
	return nil
}
