// Package noderesolver is the e2e suite's stand-in for a node's resolvers
// (the upstream a node-local cache sends external names to): a DNS server
// whose answers say which name was asked, so a cache that hands one name's
// answer to another is caught.
//
//   - a name whose first label spells an IPv4 address with dashes
//     (10-1-2-3.example.com) is answered with that address, as CoreDNS
//     answers pod names: every never-seen name has an answer of its own;
//   - any other name in the zone (example.com) gets the zone's address;
//   - names in the refused domain (cluster.local) and reverse names are
//     REFUSED: a node resolver knows no cluster names, so a cluster name
//     sent the wrong way fails;
//   - anything else is NXDOMAIN (kind asks the node's resolver for
//     host.docker.internal and must not get an answer).
//
// It is test infrastructure; nothing shipped imports it.
package noderesolver

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Config says what the resolver answers.
type Config struct {
	// Zone is the domain it answers, its apex and every name under it.
	Zone string
	// Answer is the A record of zone names that spell no address.
	Answer netip.Addr
	// Refuse is the domain it refuses.
	Refuse string
}

// Reply is the answer to r.
func (c Config) Reply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case dns.IsSubDomain(dns.Fqdn(c.Refuse), name) || dns.IsSubDomain("arpa.", name):
		m.Rcode = dns.RcodeRefused
		return m
	case !dns.IsSubDomain(dns.Fqdn(c.Zone), name):
		m.Rcode = dns.RcodeNameError
		return m
	}
	if q.Qtype != dns.TypeA {
		return m // NODATA
	}
	a := c.Answer
	if spelled, ok := Spelled(name); ok {
		a = spelled
	}
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IP(a.AsSlice())})
	return m
}

// Spelled is the IPv4 address a name's first label spells with dashes
// (10-1-2-3.example.com: 10.1.2.3).
func Spelled(name string) (netip.Addr, bool) {
	label, _, _ := strings.Cut(name, ".")
	a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
	if err != nil || !a.Is4() || strings.Count(label, "-") != 3 {
		return netip.Addr{}, false
	}
	return a, true
}

// Serve answers on listen (UDP and TCP) until ctx ends.
func Serve(ctx context.Context, listen string, c Config) error {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { _ = w.WriteMsg(c.Reply(r)) })
	errc := make(chan error, 2)
	servers := []*dns.Server{{Addr: listen, Net: "udp", Handler: h}, {Addr: listen, Net: "tcp", Handler: h}}
	for _, s := range servers {
		go func() { errc <- s.ListenAndServe() }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		for _, s := range servers {
			_ = s.Shutdown()
		}
		return nil
	}
}
