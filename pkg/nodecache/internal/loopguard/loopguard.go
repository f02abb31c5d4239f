package loopguard

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// Loop is a forwarding loop a guard found.
type Loop struct {
	Zone  string // the server block's zone, fully qualified
	Qname string // the probe's name
	From  string // the address the probe last came back from
	Addr  string // the listener the probe was sent to
}

func (l Loop) Error() string {
	return fmt.Sprintf("forwarding loop for zone %q: the probe query HINFO %s sent to %s came back from %s three times, "+
		"so the zone's upstream sends this cache's queries back to it", l.Zone, l.Qname, l.Addr, l.From)
}

// Guard is the plugin handler of one server block.
type Guard struct {
	Next  plugin.Handler
	zone  string
	qname string
	found chan<- Loop

	mu      sync.Mutex
	addr    string
	seen    int
	off     bool // probing over: pass everything on
	looping bool // loop found: answer SERVFAIL for the zone
	done    chan struct{}
	once    sync.Once
}

// Name implements plugin.Handler.
func (g *Guard) Name() string { return Name }

// ServeDNS implements plugin.Handler.
func (g *Guard) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	g.mu.Lock()
	off, looping := g.off, g.looping
	g.mu.Unlock()
	if off && !looping {
		return plugin.NextOrFailure(Name, g.Next, ctx, w, r)
	}
	state := request.Request{W: w, Req: r}
	if plugin.Zones([]string{g.zone}).Matches(state.Name()) == "" {
		return plugin.NextOrFailure(Name, g.Next, ctx, w, r)
	}
	if looping {
		return dns.RcodeServerFailure, nil
	}
	if state.QType() == dns.TypeHINFO && state.Name() == g.qname && g.count(state.RemoteAddr()) {
		return dns.RcodeServerFailure, nil
	}
	return plugin.NextOrFailure(Name, g.Next, ctx, w, r)
}

// count records a probe seen again and reports whether it makes a loop.
func (g *Guard) count(from string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen++
	if g.seen <= 2 || g.looping {
		return g.looping
	}
	g.looping = true
	select {
	case g.found <- Loop{Zone: g.zone, Qname: g.qname, From: from, Addr: g.addr}:
	default:
	}
	return true
}

// probe sends the probe query until it is answered or probeFor passes, then
// stops looking afterReply later (in time for a looped query to return).
func (g *Guard) probe(addr string) {
	g.mu.Lock()
	g.addr = addr
	if g.done == nil {
		g.done = make(chan struct{})
	}
	done := g.done
	g.mu.Unlock()
	m := new(dns.Msg)
	m.SetQuestion(g.qname, dns.TypeHINFO)
	for deadline := time.Now().Add(probeFor); time.Now().Before(deadline); {
		// Answered is not enough: during a reload the old server still
		// reads the shared loopback socket for a moment, and its answer
		// says nothing of this configuration. Done once this guard has
		// seen its own probe.
		if _, err := dns.Exchange(m, addr); err == nil && g.sawProbe() {
			break
		}
		g.mu.Lock()
		if !g.looping {
			g.seen = 0
		}
		g.mu.Unlock()
		select {
		case <-done:
			return
		case <-time.After(probeRetry):
		}
	}
	select {
	case <-done:
	case <-time.After(afterReply):
	}
	g.mu.Lock()
	g.off = true
	g.mu.Unlock()
}

func (g *Guard) sawProbe() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen > 0
}

func (g *Guard) stop() {
	g.mu.Lock()
	if g.done == nil {
		g.done = make(chan struct{})
	}
	g.mu.Unlock()
	g.once.Do(func() { close(g.done) })
}
