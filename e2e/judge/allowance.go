package judge

import (
	"fmt"
	"strings"
	"time"
)

// Evidence is what the suite saw besides the clients: each allowance needs
// some of it, produced only by a cause outside lrpdns.
type Evidence struct {
	// UpstreamDeleted and UpstreamReady: when kube-dns-upstream was deleted,
	// and when the re-created Service had ready endpoints of its own.
	UpstreamDeleted, UpstreamReady time.Time
	// NoBackend: per node, how many times Cilium's datapath found no
	// backend for a service during the scenario (its metrics: "No backend
	// slot entry found", "Service backend not found"): the moment a
	// redirect's backends are swapped.
	NoBackend map[string]int
	// ProxyTimeouts: what Cilium's DNS proxies logged as forwarded and
	// never answered ("Timeout waiting for response to forwarded proxied
	// DNS lookup"), with the node whose agent logged it.
	ProxyTimeouts []ProxyTimeout
}

// ProxyTimeout is one query Cilium's DNS proxy forwarded upstream and never
// got an answer for.
type ProxyTimeout struct {
	Node string
	Name string
	// At is when the agent logged it: the proxy waits 10 s.
	At time.Time
}

// Client is one client of a scenario.
type Client struct {
	// Kind: "socket", "udp-connected", "tcp-keepalive", "node.js", "glibc".
	Kind string
	// Node runs the client pod.
	Node string
	// Library: a resolver library with retries of its own (Node.js,
	// glibc): an outage shows as slow answers, not only as failures.
	Library bool
	// Timeout is the client's own wait for one answer.
	Timeout time.Duration
	// Interval is the client's pause between queries: at a second or more
	// its pace is judged by it, not by its first seconds.
	Interval time.Duration
}

// Allowance excuses failed queries of one cause, each against evidence,
// at most Cap per client.
type Allowance interface {
	// Name says what the failures are, for reports.
	Name() string
	// Covers says why f is not this cause ("" when it is).
	Covers(f Failure, c Client, ev Evidence) string
	// Cap is how many failures of one client it can excuse.
	Cap() int
}

// UpstreamGap excuses a failure of this cause: while kube-dns-upstream is
// deleted, and until Cilium has the re-created Service's endpoints, a cache
// has nowhere to forward a cluster name it holds no answer for. Only
// never-seen cluster names qualify (a cached name is answered, stale if
// need be), sent between the deletion and Settle after the new Service had
// ready endpoints, as a timeout or SERVFAIL.
type UpstreamGap struct {
	// Settle: how long after ready endpoints Cilium may still lack them.
	Settle time.Duration
	Max    int
}

// Name names the cause.
func (UpstreamGap) Name() string { return "the upstream gap" }

// Cap is how many failures of one client it excuses.
func (a UpstreamGap) Cap() int { return a.Max }

// Covers says why f is not this cause ("" when it is).
func (a UpstreamGap) Covers(f Failure, _ Client, ev Evidence) string {
	switch {
	case ev.UpstreamDeleted.IsZero() || ev.UpstreamReady.IsZero():
		return "no measured deletion and ready endpoints of kube-dns-upstream"
	case f.Kind != KindTimeout && f.Kind != KindServfail:
		return fmt.Sprintf("a %s, not a timeout or SERVFAIL", f.Kind)
	case !FreshClusterName(f.Name):
		return fmt.Sprintf("%s is not a never-seen cluster name (a cached name must be answered)", f.Name)
	case f.At.Before(ev.UpstreamDeleted) || f.At.After(ev.UpstreamReady.Add(a.Settle)):
		return fmt.Sprintf("sent at %s, outside the gap %s to %s (ready endpoints + %v)", clockOf(f.At),
			clockOf(ev.UpstreamDeleted), clockOf(ev.UpstreamReady.Add(a.Settle)), a.Settle)
	}
	return ""
}

// NoBackend excuses a failure of this cause: Cilium swaps a redirect's
// backends (a rollout, a drain, the policy's removal) in steps, and a
// packet or connect() in between finds no backend: refused. Each refused
// query needs a count of Cilium's no-backend datapath metric on the
// client's node during the scenario.
type NoBackend struct{ Max int }

// Name names the cause.
func (NoBackend) Name() string { return "Cilium without a backend for a moment" }

// Cap is how many failures of one client it excuses.
func (a NoBackend) Cap() int { return a.Max }

// Covers says why f is not this cause ("" when it is).
func (NoBackend) Covers(f Failure, c Client, ev Evidence) string {
	if f.Kind != KindRefused {
		return fmt.Sprintf("a %s, not a refused socket", f.Kind)
	}
	if ev.NoBackend[c.Node] == 0 {
		return fmt.Sprintf("Cilium's datapath on %s counted no missing backend during the scenario", c.Node)
	}
	return ""
}

// ProxyUnanswered excuses a failure of this cause: with a DNS rule on the
// cache's egress (the suite's visibility policy, any toFQDNs policy),
// Cilium's DNS proxy forwards the cache's query upstream; when the
// upstream's answer is lost the proxy logs the name after its 10 s wait. A
// timeout qualifies when the client's node's agent logged its name within
// that wait after it was sent.
type ProxyUnanswered struct {
	// Wait is the proxy's wait for an answer before it logs (10 s) plus
	// slack for the cache's own forward.
	Wait time.Duration
	Max  int
}

// Name names the cause.
func (ProxyUnanswered) Name() string {
	return "a query Cilium's DNS proxy forwarded and never got answered"
}

// Cap is how many failures of one client it excuses.
func (a ProxyUnanswered) Cap() int { return a.Max }

// Covers says why f is not this cause ("" when it is).
func (a ProxyUnanswered) Covers(f Failure, c Client, ev Evidence) string {
	if f.Kind != KindTimeout {
		return fmt.Sprintf("a %s, not a timeout", f.Kind)
	}
	name := fqdnLower(f.Name)
	for _, p := range ev.ProxyTimeouts {
		if fqdnLower(p.Name) == name && p.Node == c.Node && !p.At.Before(f.At) && p.At.Sub(f.At) <= a.Wait {
			return ""
		}
	}
	return fmt.Sprintf("no agent on %s logged %s as unanswered within %v after %s", c.Node, name, a.Wait, clockOf(f.At))
}

// ByDesign excuses a failure of this cause: the scenario takes the redirect
// away from clients that have nothing else at their address (the link-local
// address without classic NodeLocal DNSCache, a socket connected before the
// redirect existed): their timeouts and refusals are measured, not
// required. Wrong answers and client errors still fail.
type ByDesign struct{ Why string }

// Name names the cause.
func (a ByDesign) Name() string { return "by design: " + a.Why }

// Cap is how many failures of one client it excuses.
func (ByDesign) Cap() int { return ListCap }

// Covers says why f is not this cause ("" when it is).
func (ByDesign) Covers(f Failure, _ Client, _ Evidence) string {
	if f.Kind == KindWrong {
		return "a wrong answer"
	}
	return ""
}

func clockOf(t time.Time) string { return t.UTC().Format("15:04:05.000") }

func fqdnLower(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}
