// Package dnstest runs real DNS servers on loopback for tests and
// benchmarks: each answers A queries with a fixed address over UDP and TCP
// on one port and records every query with the transport it came over.
//
// It is test support only; nothing in a shipped binary imports it.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Query is one query a Server received.
type Query struct {
	Name string // lower case, fully qualified
	Net  string // "udp" or "tcp"
}

// Server is a recording DNS server on loopback, UDP and TCP on one port.
type Server struct {
	Addr netip.AddrPort

	answer        netip.Addr
	ttl           uint32
	records       int
	nxPrefix      string
	nxdomainFirst int
	udp           *dns.Server
	tcp           *dns.Server

	mu      sync.Mutex
	queries []Query
	count   int
	record  bool
}

// Options configure a Server.
type Options struct {
	// Answer is the A record returned for every name.
	Answer netip.Addr
	// TTL of the answer, in seconds.
	TTL uint32
	// NoRecord keeps only a count, for load tests.
	NoRecord bool
	// Host is the loopback address to listen on; default 127.0.0.1.
	Host string
	// NXDomainFirst answers the first N queries with NXDOMAIN, as a DNS
	// server does for a name that does not exist yet.
	NXDomainFirst int
	// Records is how many A records an answer holds (Answer, then the
	// addresses after it), compressed as real servers send them; 0 is one.
	Records int
	// NXDomainPrefix answers names that start with it NXDOMAIN with an SOA,
	// which caches keep as a denial.
	NXDomainPrefix string
}

// StartTB starts a Server for a test or benchmark and closes it when that
// ends; a failure to start fails it.
func StartTB(tb testing.TB, o Options) *Server {
	tb.Helper()
	s, err := Start(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Start starts a Server. Close it when done.
func Start(o Options) (*Server, error) {
	s := &Server{answer: o.Answer, ttl: o.TTL, record: !o.NoRecord, nxdomainFirst: o.NXDomainFirst, records: max(o.Records, 1), nxPrefix: o.NXDomainPrefix}
	var lastErr error
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	for range 20 { // the UDP port matching a free TCP port can be taken
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("failed to listen on TCP: %w", err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			_ = ln.Close()
			lastErr = err
			continue
		}
		s.Addr = netip.MustParseAddrPort(ln.Addr().String())
		s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve)}
		s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
		started := make(chan error, 2)
		for _, srv := range []*dns.Server{s.tcp, s.udp} {
			srv.NotifyStartedFunc = func() { started <- nil }
			go func() {
				if err := srv.ActivateAndServe(); err != nil {
					started <- err
				}
			}()
		}
		for range 2 {
			if err := <-started; err != nil {
				s.Close()
				return nil, fmt.Errorf("failed to start DNS server: %w", err)
			}
		}
		return s, nil
	}
	return nil, fmt.Errorf("failed to find a port free for UDP and TCP: %w", lastErr)
}

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		s.mu.Lock()
		s.count++
		nx := s.count <= s.nxdomainFirst
		if s.record {
			s.queries = append(s.queries, Query{Name: strings.ToLower(q.Name), Net: w.RemoteAddr().Network()})
		}
		s.mu.Unlock()
		switch {
		case nx:
			m.Rcode = dns.RcodeNameError
		case s.nxPrefix != "" && strings.HasPrefix(q.Name, s.nxPrefix):
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
				Ns: "ns.example.", Mbox: "hostmaster.example.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.ttl}}
		case q.Qtype == dns.TypeA && s.answer.Is4():
			a := s.answer
			for range s.records {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.ttl},
					A:   a.AsSlice(),
				})
				a = a.Next()
			}
			m.Compress = s.records > 1
		}
	}
	_ = w.WriteMsg(m)
}

// Queries returns the queries received so far.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// QueriesFor returns the queries received for name (any case, dot optional).
func (s *Server) QueriesFor(name string) []Query {
	name = dns.CanonicalName(name)
	var out []Query
	for _, q := range s.Queries() {
		if q.Name == name {
			out = append(out, q)
		}
	}
	return out
}

// Count is the number of queries received.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Close stops the server; it then refuses UDP and TCP on its port.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv != nil {
			_ = srv.ShutdownContext(ctx)
		}
	}
}

// FreeAddr is a loopback address whose TCP port was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreePort is a loopback port that was free a moment ago for both UDP and
// TCP, as a DNS server needs.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		a := FreeAddr(tb)
		if pc, err := net.ListenPacket("udp", a); err == nil {
			_ = pc.Close()
			return int(netip.MustParseAddrPort(a).Port())
		}
	}
	tb.Fatal("no loopback port free for both UDP and TCP")
	return 0
}
