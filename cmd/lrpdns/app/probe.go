package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// probeReport is what `lrpdns probe` prints: the e2e suite's report
// (e2e/judge.Report), which resolve.js and getent.sh print too.
type probeReport struct {
	Server   string `json:"server"`
	Client   string `json:"client"`
	Sent     int    `json:"sent"`
	Answered int    `json:"answered"`
	Failed   int    `json:"failed"`
	// Wrong counts the failures that were answers, but not the expected one.
	Wrong int `json:"wrong"`
	// Resent counts the queries sent again on a new socket because the kept
	// one reported an error (answered or not, each is one query in Sent).
	Resent int `json:"resent"`
	// ResentAfter counts the kept socket's errors that made them, by kind.
	ResentAfter map[string]int `json:"resentAfter,omitempty"`
	Failures    []probeFailure `json:"failures,omitempty"` // the first probeListCap
	Answers     map[string]int `json:"answers"`            // rcode, address or "fresh" -> count
	// Started is when the first query was sent; PerSecond counts the
	// queries sent in each second from then.
	Started   time.Time `json:"started"`
	PerSecond []int     `json:"perSecond"`
}

// probeFailure is one failed query.
type probeFailure struct {
	At     time.Time `json:"at"`
	Name   string    `json:"name"`
	Kind   string    `json:"kind"` // timeout, refused, servfail, dns-refused, wrong, error
	Detail string    `json:"detail,omitempty"`
}

// probeListCap is how many failures a report lists (e2e/judge.ListCap).
const probeListCap = 50

// failureKind classifies a query's error as the e2e suite's judge does.
func failureKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "refused"
	}
	return "error"
}

// spelled is the never-seen name for want "spelled": its first label
// spells its address, which e2e/noderesolver answers.
const spelled = "spelled"

// ErrProbeFailed is returned when any query failed.
var ErrProbeFailed = errors.New("probe: some queries failed")

// probeTarget is a name and, optionally, what its answer must be: an
// address among the A records, or an rcode (NXDOMAIN).
type probeTarget struct {
	name, want string
	fresh      bool // a never-seen name: its answers are counted together
}

func parseTargets(args []string) []probeTarget {
	out := make([]probeTarget, 0, len(args))
	for _, a := range args {
		name, want, _ := strings.Cut(a, "=")
		out = append(out, probeTarget{name: dns.Fqdn(name), want: want})
	}
	return out
}

// freshName is the n-th never-seen name under suffix, a pod name that
// CoreDNS's kubernetes plugin (pods insecure) answers with the address it
// spells: 10-<run>-<hi>-<lo>.<suffix> is 10.<run>.<hi>.<lo>.
func freshName(suffix string, run, n int) probeTarget {
	hi, lo := (n/254)%254+1, n%254+1
	return probeTarget{
		name:  dns.Fqdn(fmt.Sprintf("10-%d-%d-%d.%s", run, hi, lo, suffix)),
		want:  fmt.Sprintf("10.%d.%d.%d", run, hi, lo),
		fresh: true,
	}
}

// check says what is wrong with r for t, or "".
func (t probeTarget) check(r *dns.Msg) string {
	if t.want == "" {
		return ""
	}
	if rc, ok := dns.StringToRcode[strings.ToUpper(t.want)]; ok {
		if r.Rcode != rc {
			return fmt.Sprintf("rcode %s, want %s", dns.RcodeToString[r.Rcode], t.want)
		}
		return ""
	}
	var got []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			if a.A.String() == t.want {
				return ""
			}
			got = append(got, a.A.String())
		}
	}
	return fmt.Sprintf("answer %s %v, want %s", dns.RcodeToString[r.Rcode], got, t.want)
}

// runProbe sends A queries for the names, round robin, until the duration
// or count is reached, and prints a JSON report. The e2e suites run it in a
// client pod, with the lrpdns image, during rollouts. A NAME=WANT argument
// also checks the answer: WANT is an address the A records must hold, or an
// rcode; a wrong answer is a failure (a query that went to the wrong
// upstream). --fresh SUFFIX adds a never-seen name to every round, so each
// round also has a cache miss.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lrpdns probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "DNS server `IP[:PORT]`; default: the first nameserver of /etc/resolv.conf")
	tcp := fs.Bool("tcp", false, "query over TCP")
	client := fs.String("client", clientSocket, "how the client holds its sockets: "+clientSocket+" (a new socket per query, as glibc does), "+clientUDPConnected+" (one connected UDP socket for every query, replaced and the query sent again after a socket error, as c-ares does), "+clientTCPKeepalive+" (one TCP connection, opened again after an error)")
	interval := fs.Duration("interval", 20*time.Millisecond, "pause between queries")
	duration := fs.Duration("duration", 0, "stop after this long")
	count := fs.Int("count", 0, "stop after this many queries")
	timeout := fs.Duration("timeout", 2*time.Second, "per-query timeout (a timeout is a failure)")
	fresh := fs.String("fresh", "", "add a never-seen pod name under `SUFFIX` (e.g. default.pod.cluster.local) to each round, checked against the address it spells")
	freshExternal := fs.String("fresh-external", "", "add a never-seen name under `SUFFIX[=WANT]` to each round, an external cache miss: rN-I.SUFFIX checked against WANT, or with WANT \"spelled\" 10-N-HI-LO.SUFFIX checked against the address it spells")
	run := fs.Int("run", 0, "the `N` (1-254) in the never-seen names (10-N-HI-LO., rN-I.), which keeps probes running side by side from asking each other's names; 0: a random one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *run < 0 || *run > 254 {
		return fmt.Errorf("probe: invalid --run %d: want 1 to 254, or 0 for a random one", *run)
	}
	if *run == 0 {
		*run = rand.IntN(254) + 1 //nolint:gosec // not a secret: keeps runs' names apart
	}
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") {
			return fmt.Errorf("probe: flag %q after the names: give flags first", a)
		}
	}
	targets := parseTargets(fs.Args())
	if (len(targets) == 0 && *fresh == "" && *freshExternal == "") || (*duration <= 0 && *count <= 0) {
		return errors.New("probe: give NAME[=WANT]..., --fresh or --fresh-external, and --duration or --count")
	}
	// Each round: the named targets, then the never-seen names.
	var makers []func(n int) probeTarget
	if *fresh != "" {
		makers = append(makers, func(n int) probeTarget { return freshName(*fresh, *run, n) })
	}
	if *freshExternal != "" {
		suffix, want, _ := strings.Cut(*freshExternal, "=")
		makers = append(makers, func(n int) probeTarget {
			if want == spelled {
				return freshName(suffix, *run, n)
			}
			return probeTarget{name: dns.Fqdn(fmt.Sprintf("r%d-%d.%s", *run, n, suffix)), want: want, fresh: true}
		})
	}
	round := len(targets) + len(makers)
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
	ex, err := newExchanger(*client, *tcp, addr, *timeout)
	if err != nil {
		return err
	}
	defer ex.close()
	rep := probeReport{Server: addr, Client: fmt.Sprintf("%s, every %v", ex.kind(), *interval), Answers: map[string]int{}, Started: time.Now().UTC()}
	deadline := rep.Started.Add(*duration)
	fail := func(at time.Time, name, kind, detail string) {
		rep.Failed++
		if kind == "wrong" {
			rep.Wrong++
		}
		if len(rep.Failures) < probeListCap {
			rep.Failures = append(rep.Failures, probeFailure{At: at.UTC(), Name: name, Kind: kind, Detail: detail})
		}
	}
	for i := 0; (*count <= 0 || i < *count) && (*duration <= 0 || time.Now().Before(deadline)); i++ {
		if ctx.Err() != nil {
			break
		}
		var t probeTarget
		if j := i % round; j < len(targets) {
			t = targets[j]
		} else {
			t = makers[j-len(targets)](i / round)
		}
		m := new(dns.Msg)
		m.SetQuestion(t.name, dns.TypeA)
		rep.Sent++
		sent := time.Now()
		sec := int(sent.Sub(rep.Started) / time.Second)
		for len(rep.PerSecond) <= sec {
			rep.PerSecond = append(rep.PerSecond, 0)
		}
		rep.PerSecond[sec]++
		r, resentAfter, err := ex.exchange(ctx, m)
		if resentAfter != nil {
			rep.Resent++
			if rep.ResentAfter == nil {
				rep.ResentAfter = map[string]int{}
			}
			rep.ResentAfter[errClass(resentAfter)]++
		}
		switch {
		case err != nil:
			fail(sent, m.Question[0].Name, failureKind(err), err.Error())
		case r.Rcode == dns.RcodeServerFailure:
			rep.Answers[dns.RcodeToString[r.Rcode]]++
			fail(sent, m.Question[0].Name, "servfail", "SERVFAIL")
		case r.Rcode == dns.RcodeRefused:
			rep.Answers[dns.RcodeToString[r.Rcode]]++
			fail(sent, m.Question[0].Name, "dns-refused", "REFUSED")
		case t.check(r) != "":
			fail(sent, m.Question[0].Name, "wrong", t.check(r))
		default:
			rep.Answered++
			key := dns.RcodeToString[r.Rcode]
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					key = a.A.String()
					break
				}
			}
			if t.fresh {
				key = "fresh"
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
