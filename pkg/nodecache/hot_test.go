package nodecache

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// zoo answers a name by a hash of its first label, with what caches meet:
// NXDOMAIN and NODATA with an SOA, CNAME chains, answers too big for 512
// bytes, TXT, MX, SRV, PTR, several A and AAAA records, and an RRSIG when
// the query has DO. Owner names keep the query's letter case. HINFO
// queries are refused.
func zoo(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	label, zone, _ := strings.Cut(q.Name, ".")
	// Authoritative for the cluster domain, as CoreDNS is; a recursive
	// answer for other names, as a resolver gives (the cache's own
	// answers always have AA).
	m.Authoritative, m.Compress = strings.Contains(strings.ToLower(q.Name), "cluster.local."), true
	h := fnv.New32a()
	_, _ = h.Write([]byte(strings.ToLower(label)))
	n := h.Sum32()
	ttl := 60 + n%600 // above the caches' 30 s: nothing expires in the test
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	soa := &dns.SOA{Hdr: hdr(zone, dns.TypeSOA), Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: n, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 120}
	ip4 := func(i uint32) net.IP { return net.IPv4(10, byte(n>>8), byte(n), byte(i)) }
	switch kind := n % 8; {
	case q.Qtype == dns.TypeHINFO: // the loop guards' probes
		m.Rcode = dns.RcodeRefused
	case kind == 0:
		m.Rcode, m.Ns = dns.RcodeNameError, []dns.RR{soa}
	case kind == 1:
		m.Ns = []dns.RR{soa}
	case kind == 2 && q.Qtype != dns.TypeCNAME:
		target := "t-" + label + "." + zone
		m.Answer = []dns.RR{&dns.CNAME{Hdr: hdr(q.Name, dns.TypeCNAME), Target: target}}
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(target, dns.TypeA), A: ip4(1)})
		}
	case q.Qtype == dns.TypeA:
		count := uint32(1 + n%3)
		if kind == 3 {
			count = 40 // 40 records: truncated under 512 bytes, whole over TCP
		}
		for i := range count {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: ip4(i + 1)})
		}
	case q.Qtype == dns.TypeAAAA:
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA), AAAA: net.ParseIP(fmt.Sprintf("fd00::%x", n&0xffff))}}
	case q.Qtype == dns.TypeTXT:
		m.Answer = []dns.RR{&dns.TXT{Hdr: hdr(q.Name, dns.TypeTXT), Txt: []string{strings.Repeat("x", 200), strings.Repeat("y", int(n%250))}}}
	case q.Qtype == dns.TypeMX:
		m.Answer = []dns.RR{&dns.MX{Hdr: hdr(q.Name, dns.TypeMX), Preference: 10, Mx: "mx." + zone}}
	case q.Qtype == dns.TypeSRV:
		m.Answer = []dns.RR{&dns.SRV{Hdr: hdr(q.Name, dns.TypeSRV), Priority: 1, Weight: 5, Port: 53, Target: "srv." + zone}}
	case q.Qtype == dns.TypePTR:
		m.Answer = []dns.RR{&dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: "host-" + label + ".example.org."}}
	default:
		m.Ns = []dns.RR{soa}
	}
	if o := r.IsEdns0(); o != nil {
		if o.Do() && len(m.Answer) > 0 {
			m.Answer = append(m.Answer, &dns.RRSIG{Hdr: hdr(m.Answer[0].Header().Name, dns.TypeRRSIG), TypeCovered: m.Answer[0].Header().Rrtype,
				Algorithm: 13, Labels: 2, OrigTtl: ttl, Expiration: 2000000000, Inception: 1700000000, KeyTag: 1, SignerName: zone, Signature: "AAAA"})
		}
		m.SetEdns0(1232, o.Do())
	}
	if w.RemoteAddr().Network() == "udp" {
		m.Truncate(dns.MinMsgSize)
	}
	_ = w.WriteMsg(m)
}

// startZoo serves zoo on loopback over UDP and TCP.
func startZoo(t *testing.T) netip.AddrPort {
	t.Helper()
	port := dnstest.FreePort(t)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for _, network := range []string{"udp", "tcp"} {
		s := &dns.Server{Addr: addr.String(), Net: network, Handler: dns.HandlerFunc(zoo)}
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ListenAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("zoo did not start on %s %s", network, addr)
		}
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return addr
}

// hotPair is two node-caches that differ only in the hot path, both
// forwarding the cluster domain and every other name to upstream.
func hotPair(t *testing.T, upstream netip.AddrPort) (hot, chain *harness) {
	t.Helper()
	start := func(hotPath bool) *harness {
		return newHarness(t, func(h *harness) {
			h.opts.ClusterDNS = []string{upstream.String()}
			h.opts.resolverPort = upstream.Port()
			h.opts.Cache.HotPath = hotPath
			h.opts.Cache.DenialTTL = 30 * time.Second // nothing expires in the test
		})
	}
	return start(true), start(false)
}

type probe struct {
	name       string
	qtype      uint16
	edns       uint16 // 0: no OPT
	do, cd, rd bool
	network    string
}

// zone is the zone CoreDNS's metrics label p's name with.
func (p probe) zone() string {
	for _, z := range []string{"cluster.local.", "in-addr.arpa."} {
		if strings.HasSuffix(strings.ToLower(p.name), z) {
			return z
		}
	}
	return "."
}

func (p probe) msg(id uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(p.name, p.qtype)
	m.Id, m.CheckingDisabled, m.RecursionDesired = id, p.cd, p.rd
	if p.edns > 0 {
		m.SetEdns0(p.edns, p.do)
	}
	return m
}

// probes is a seeded random mix of names (in three zones, each in one of
// three letter cases), types, EDNS buffer sizes, DO, CD and RD bits, and
// transports.
func probes(rng *rand.Rand, n int) []probe {
	zones := []string{"svc.cluster.local.", "example.org.", "10.in-addr.arpa."}
	types := []uint16{dns.TypeA, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX, dns.TypeSRV, dns.TypeCNAME, dns.TypePTR, dns.TypeNS}
	out := make([]probe, n)
	for i := range out {
		name := fmt.Sprintf("n%d.%s", rng.IntN(40), zones[rng.IntN(len(zones))])
		switch rng.IntN(3) {
		case 1:
			name = strings.ToUpper(name)
		case 2:
			b := []byte(name)
			for j := range b {
				if rng.IntN(2) == 0 {
					b[j] = strings.ToUpper(string(b[j]))[0]
				}
			}
			name = string(b)
		}
		p := probe{name: name, qtype: types[rng.IntN(len(types))], cd: rng.IntN(4) == 0, rd: rng.IntN(5) != 0, network: "udp"}
		if rng.IntN(4) == 0 {
			p.network = "tcp"
		}
		if e := rng.IntN(4); e > 0 {
			p.edns = []uint16{512, 1232, 4096}[e-1]
			p.do = rng.IntN(3) == 0
		}
		out[i] = p
	}
	return out
}

// conns keeps one UDP and one TCP connection to a node-cache, the TCP
// one opened again when the node-cache closes it (after --max-tcp-queries).
type conns struct {
	h     *harness
	conns map[string]*dns.Conn
}

func dialBoth(t *testing.T, h *harness) *conns {
	t.Helper()
	c := &conns{h: h, conns: map[string]*dns.Conn{}}
	t.Cleanup(func() {
		for _, conn := range c.conns {
			_ = conn.Close()
		}
	})
	for _, network := range []string{"udp", "tcp"} {
		if err := c.dial(network); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *conns) dial(network string) error {
	if old := c.conns[network]; old != nil {
		_ = old.Close()
	}
	conn, err := dns.Dial(network, c.h.dns[network])
	if err != nil {
		return err
	}
	conn.UDPSize = dns.MaxMsgSize
	c.conns[network] = conn
	return nil
}

func (c *conns) ask(p probe, id uint16) (*dns.Msg, error) {
	r, err := c.exchange(p, id)
	if err != nil && p.network == "tcp" && c.h.opts.MaxTCPQueries > 0 {
		if err := c.dial("tcp"); err != nil {
			return nil, err
		}
		return c.exchange(p, id)
	}
	return r, err
}

func (c *conns) exchange(p probe, id uint16) (*dns.Msg, error) {
	conn := c.conns[p.network]
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := conn.WriteMsg(p.msg(id)); err != nil {
		return nil, err
	}
	for {
		r, err := conn.ReadMsg()
		if err != nil || r.Id == id {
			return r, err
		}
	}
}

// sameAnswer compares two answers to one query apart from the ID, and
// their TTLs within a second or two: each cache counts its own whole
// seconds from when it stored the answer, and the hot path rounds down.
func sameAnswer(hot, chain *dns.Msg) string {
	hot, chain = hot.Copy(), chain.Copy()
	hot.Id, chain.Id = 0, 0
	hs, cs := sections(hot), sections(chain)
	if len(hs) != len(cs) {
		return fmt.Sprintf("%d records, want %d", len(hs), len(cs))
	}
	for i := range hs {
		if hs[i].Header().Rrtype == dns.TypeOPT {
			continue
		}
		ht, ct := hs[i].Header().Ttl, cs[i].Header().Ttl
		if ht == 0 || ht+2 < ct || ht > ct+1 {
			return fmt.Sprintf("record %d: TTL %d, the chain's %d", i, ht, ct)
		}
		hs[i].Header().Ttl, cs[i].Header().Ttl = 0, 0
	}
	if h, c := hot.String(), chain.String(); h != c {
		return fmt.Sprintf("\n%s\nthe chain's:\n%s", h, c)
	}
	return ""
}

func sections(m *dns.Msg) []dns.RR {
	return append(append(append([]dns.RR(nil), m.Answer...), m.Ns...), m.Extra...)
}

// TestHotPathAnswersAsTheChain sends one random mix of queries, over UDP
// and TCP, to two node-caches that differ only in the hot path: the
// answers must be the same but for ID and TTL countdown, the hot path must
// have answered most repeats, and CoreDNS's request and response counters
// must say the same of both.
func TestHotPathAnswersAsTheChain(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	before := counters(t, nil)
	hot, chain := hotPair(t, startZoo(t))
	hc, cc := dialBoth(t, hot), dialBoth(t, chain)
	const n = 6000
	diffs := 0
	seen := map[string]float64{} // answers the clients got, labelled as CoreDNS counts them
	mix := probes(rng, 150)
	for i := range n {
		p := mix[rng.IntN(len(mix))]
		id := uint16(i)
		hr, err := hc.ask(p, id)
		if err != nil {
			t.Fatalf("query %d %+v to the hot path: %v", i, p, err)
		}
		cr, err := cc.ask(p, id)
		if err != nil {
			t.Fatalf("query %d %+v to the chain: %v", i, p, err)
		}
		seen[fmt.Sprintf("plugin=errors,rcode=%s,view=,zone=%s", dns.RcodeToString[hr.Rcode], p.zone())]++
		if d := sameAnswer(hr, cr); d != "" {
			diffs++
			if diffs <= 5 {
				t.Errorf("query %d %+v: answers differ: %s", i, p, d)
			}
		}
	}
	if diffs > 0 {
		t.Fatalf("%d of %d answers differ", diffs, n)
	}
	got := counters(t, before)
	if len(got) != 2 {
		t.Fatalf("servers counted: %v, want the two node-caches'", got)
	}
	var hotServer, chainServer string
	for s, c := range got {
		if c.hot > 0 {
			hotServer = s
		} else {
			chainServer = s
		}
	}
	if hotServer == "" || chainServer == "" {
		t.Fatalf("hot hits by server: %v, want one server with and one without", got)
	}
	h, c := got[hotServer], got[chainServer]
	t.Logf("hot path answered %.0f of %d queries", h.hot, n)
	if h.hot < n/3 {
		t.Errorf("hot path answered %.0f of %d queries, want most repeats (over a third)", h.hot, n)
	}
	for _, k := range []struct {
		what     string
		hot, cur map[string]float64
	}{{"coredns_dns_requests_total", h.requests, c.requests}, {"coredns_dns_responses_total", h.responses, c.responses}} {
		if fmt.Sprint(k.hot) != fmt.Sprint(k.cur) {
			t.Errorf("%s with the hot path %v, without %v", k.what, k.hot, k.cur)
		}
	}
	// The loop guards' probes (HINFO, which zoo refuses) are the only
	// answers the clients did not get.
	for labels, v := range h.responses {
		if !strings.Contains(labels, "rcode=REFUSED") && seen[labels] != v {
			t.Errorf("coredns_dns_responses_total{%s} = %v, the clients got %v", labels, v, seen[labels])
		}
	}
}

type serverCounts struct {
	hot, prefetch       float64
	requests, responses map[string]float64 // by labels but server
}

// counters reads, from the process's registry, the request, response,
// hot-hit and prefetch counters of each server, less what before (an
// earlier counters(t, nil)) had; servers whose counters did not change are
// left out. Subtracting, not skipping servers seen before: a server of an
// earlier test in this process may have had the port, so the label, of
// one started since.
func counters(t *testing.T, before map[string]*serverCounts) map[string]*serverCounts {
	t.Helper()
	out := map[string]*serverCounts{}
	for _, f := range gather(t) {
		name := f.GetName()
		switch name {
		case "coredns_dns_requests_total", "coredns_dns_responses_total", "lrpdns_node_cache_hot_hits_total", "coredns_cache_prefetch_total":
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			var server string
			var rest []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "server" {
					server = l.GetValue()
				} else {
					rest = append(rest, l.GetName()+"="+l.GetValue())
				}
			}
			c := out[server]
			if c == nil {
				c = &serverCounts{requests: map[string]float64{}, responses: map[string]float64{}}
				out[server] = c
			}
			v := m.GetCounter().GetValue()
			switch name {
			case "lrpdns_node_cache_hot_hits_total":
				c.hot += v
			case "coredns_cache_prefetch_total":
				c.prefetch += v
			case "coredns_dns_requests_total":
				c.requests[strings.Join(rest, ",")] += v
			default:
				c.responses[strings.Join(rest, ",")] += v
			}
		}
	}
	for server, c := range out {
		b := before[server]
		if b == nil {
			continue
		}
		c.hot -= b.hot
		c.prefetch -= b.prefetch
		changed := c.hot != 0 || c.prefetch != 0
		for _, m := range []struct{ now, then map[string]float64 }{{c.requests, b.requests}, {c.responses, b.responses}} {
			for k, v := range m.then {
				m.now[k] -= v
			}
			for k, v := range m.now {
				if v == 0 {
					delete(m.now, k)
				} else {
					changed = true
				}
			}
		}
		if !changed {
			delete(out, server)
		}
	}
	return out
}

func gather(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	fs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestHotPathKeepsPrefetch asks one name 100 times a second for 12 s of
// 5-second TTLs from two node-caches that differ only in the hot path:
// the cache prefetches the name as often with the hot path as without,
// and no answer has a TTL outside 1..5.
func TestHotPathKeepsPrefetch(t *testing.T) {
	before := counters(t, nil)
	var hs []*harness
	for _, hotPath := range []bool{true, false} {
		hs = append(hs, newHarness(t, func(h *harness) {
			h.opts.Cache.HotPath = hotPath
			h.opts.Cache.SuccessTTL = 5 * time.Second
		}))
	}
	const name = "busy.svc.cluster.local."
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		for i, h := range hs {
			r, err := h.query("udp", name)
			if err != nil {
				t.Fatalf("node-cache %d: %v", i, err)
			}
			if len(r.Answer) != 1 || r.Answer[0].Header().Ttl < 1 || r.Answer[0].Header().Ttl > 5 {
				t.Fatalf("node-cache %d answered %v, want one record with a TTL of 1 to 5", i, r.Answer)
			}
		}
	}
	prefetches := map[bool]float64{} // by whether the server answered hot
	got := counters(t, before)
	for _, c := range got {
		prefetches[c.hot > 0] += c.prefetch
	}
	for server, c := range got {
		t.Logf("%s: %v hot hits, %v prefetches", server, c.hot, c.prefetch)
	}
	if prefetches[false] < 2 {
		t.Fatalf("the chain alone prefetched %v times in 12 s of 5 s TTLs, want 2 or more", prefetches[false])
	}
	if prefetches[true] < prefetches[false]-1 {
		t.Errorf("with the hot path the cache prefetched %v times, without %v", prefetches[true], prefetches[false])
	}
}
