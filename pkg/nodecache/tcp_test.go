package nodecache

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
)

// TestTCPConnectionCarriesAtMostMaxTCPQueries: a client that pipelines
// queries on one connection gets MaxTCPQueries answers, then the cache
// closes the connection (CoreDNS's default keeps it for ever).
func TestTCPConnectionCarriesAtMostMaxTCPQueries(t *testing.T) {
	h := newHarness(t, nil)
	h.mustAnswer("pipelined.example.com", "192.0.2.1") // cached: answers come at once
	c, err := net.Dial("tcp", h.dns["tcp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &dns.Conn{Conn: c}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	ask := func(id int) error {
		m := new(dns.Msg)
		m.SetQuestion("pipelined.example.com.", dns.TypeA)
		m.Id = uint16(id)
		return conn.WriteMsg(m)
	}
	for i := range front.DefaultLimits.MaxTCPQueries {
		if err := ask(i); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	for i := range front.DefaultLimits.MaxTCPQueries {
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("answer %d of %d pipelined: %v", i, front.DefaultLimits.MaxTCPQueries, err)
		}
		if r.Rcode != dns.RcodeSuccess || r.Id != uint16(i) {
			t.Fatalf("answer %d: rcode %s, id %d", i, dns.RcodeToString[r.Rcode], r.Id)
		}
	}
	_ = ask(front.DefaultLimits.MaxTCPQueries) // may fail already: the cache closed
	r, err := conn.ReadMsg()
	if err == nil {
		t.Fatalf("query %d on one connection answered (rcode %s); want the connection closed after %d",
			front.DefaultLimits.MaxTCPQueries+1, dns.RcodeToString[r.Rcode], front.DefaultLimits.MaxTCPQueries)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %d queries: %v", front.DefaultLimits.MaxTCPQueries, err)
	}
}
