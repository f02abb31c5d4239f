package hot

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// clock is a store's time, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestStore(max int) (*Store, *clock) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	s := NewStore(max)
	s.now = c.now
	return s, c
}

func query(t testing.TB, name string, qtype uint16, edns bool, do bool) (*dns.Msg, []byte) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	if edns {
		m.SetEdns0(1232, do)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

// cacheAnswer is what the cache plugin writes for q: every record with one
// TTL, and the OPT record of the query echoed.
func cacheAnswer(t testing.TB, q *dns.Msg, ttl uint32, rcode int) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	m.Authoritative = true
	name := q.Question[0].Name
	if rcode == dns.RcodeSuccess {
		m.Answer = []dns.RR{
			&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: []byte{10, 0, 0, 1}},
			&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: []byte{10, 0, 0, 2}},
		}
	} else {
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: 5}}
	}
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testParams = &Params{HandBack: 4, Warm: 2, StaleTTL: 30}

func hit() *Capture {
	return &Capture{Block: Block{Params: testParams, Zones: []string{"example."}, Counted: true, Writer: "errors", Server: "dns://test"}}
}

func miss() *Capture {
	c := hit()
	c.passed.Store(true)
	return c
}

func answer(t *testing.T, s *Store, q []byte, id uint16) (*dns.Msg, bool) {
	t.Helper()
	q = bytes.Clone(q)
	binary.BigEndian.PutUint16(q, id)
	out, ok := s.Answer(q, UDP, false, nil)
	if !ok {
		return nil, false
	}
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("answer does not unpack: %v", err)
	}
	return m, true
}

func TestAnswerOnlyWarmHits(t *testing.T) {
	s, _ := newTestStore(DefaultMaxBytes)
	qm, q := query(t, "a.example.", dns.TypeA, true, true)
	s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), UDP, hit())
	if _, ok := answer(t, s, q, 7); ok {
		t.Fatal("answered after 1 cache hit, want 2 (Warm) first")
	}
	s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), UDP, hit())
	r, ok := answer(t, s, q, 7)
	if !ok {
		t.Fatal("no answer after 2 cache hits")
	}
	if r.Id != 7 || len(r.Answer) != 2 || r.Answer[0].Header().Ttl != 20 {
		t.Errorf("answer = %v, want ID 7 and both records at TTL 20", r)
	}
	if o := r.IsEdns0(); o == nil || !o.Do() || o.UDPSize() != 1232 {
		t.Errorf("OPT = %v, want the learnt one (DO, 1232): its TTL field holds the flags and is not a TTL", o)
	}
	if _, ok := s.Answer(q, TCP, false, nil); ok {
		t.Error("answered over TCP what was learnt over UDP")
	}
	// A miss (the cache passed the query on) starts the count again.
	s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), UDP, miss())
	if _, ok := answer(t, s, q, 7); ok {
		t.Error("answered after the cache passed the query on")
	}
}

func TestAnswerTTLCountsDownAndHandsBack(t *testing.T) {
	s, c := newTestStore(DefaultMaxBytes)
	qm, q := query(t, "a.example.", dns.TypeA, false, false)
	for range 2 {
		s.Learn(q, cacheAnswer(t, qm, 10, dns.RcodeSuccess), UDP, hit())
	}
	for _, tc := range []struct {
		after time.Duration
		ttl   uint32 // 0: not answered
	}{
		{0, 10},
		{time.Millisecond, 9}, // rounded up: never above the cache's own TTL
		{time.Second, 9},
		{2500 * time.Millisecond, 7},
		{5 * time.Second, 5},
		{5001 * time.Millisecond, 0}, // 4 s left: the cache may prefetch; its turn
		{-time.Second, 0},            // the clock went back
	} {
		c.t = time.Unix(1_700_000_000, 0).Add(tc.after)
		r, ok := answer(t, s, q, 1)
		switch {
		case tc.ttl == 0 && ok:
			t.Errorf("after %v: answered (TTL %d), want the chain's turn", tc.after, r.Answer[0].Header().Ttl)
		case tc.ttl != 0 && !ok:
			t.Errorf("after %v: not answered, want TTL %d", tc.after, tc.ttl)
		case ok:
			for _, rr := range r.Answer {
				if rr.Header().Ttl != tc.ttl {
					t.Errorf("after %v: TTL %d, want %d", tc.after, rr.Header().Ttl, tc.ttl)
				}
			}
		}
	}
}

func TestAnswerNoLongerThanLifetime(t *testing.T) {
	s, c := newTestStore(DefaultMaxBytes)
	qm, q := query(t, "a.example.", dns.TypeA, false, false)
	for range 2 {
		s.Learn(q, cacheAnswer(t, qm, 3600, dns.RcodeSuccess), UDP, hit())
	}
	c.t = c.t.Add(Lifetime - time.Millisecond)
	if _, ok := answer(t, s, q, 1); !ok {
		t.Fatal("not answered within Lifetime")
	}
	c.t = c.t.Add(time.Millisecond)
	if _, ok := answer(t, s, q, 1); ok {
		t.Error("answered after Lifetime: the cache's prefetch count would start over")
	}
}

func TestLearnRefuses(t *testing.T) {
	qm, q := query(t, "a.example.", dns.TypeA, true, false)
	mixed := cacheAnswer(t, qm, 20, dns.RcodeSuccess)
	ttlAt, _, _ := ttls(mixed)
	binary.BigEndian.PutUint32(mixed[ttlAt[1]:], 19)
	for name, resp := range map[string][]byte{
		"serve_stale's TTL": cacheAnswer(t, qm, 30, dns.RcodeSuccess),
		"TTL at hand-back":  cacheAnswer(t, qm, 4, dns.RcodeSuccess),
		"SERVFAIL":          cacheAnswer(t, qm, 20, dns.RcodeServerFailure),
		"REFUSED":           cacheAnswer(t, qm, 20, dns.RcodeRefused),
		"TTLs that differ":  mixed,
		"truncated message": cacheAnswer(t, qm, 20, dns.RcodeSuccess)[:40],
		"no answer at all":  nil,
	} {
		s, _ := newTestStore(DefaultMaxBytes)
		for range 3 {
			s.Learn(q, resp, UDP, hit())
		}
		if _, ok := s.Answer(q, UDP, false, nil); ok {
			t.Errorf("%s: learnt and answered", name)
		}
	}
	// A block without the hot directive teaches nothing.
	s, _ := newTestStore(DefaultMaxBytes)
	for range 3 {
		s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), UDP, &Capture{})
	}
	if s.Len() != 0 {
		t.Errorf("learnt %d answers from a block without the hot directive", s.Len())
	}
}

func TestNegativeAnswerKeepsItsSOA(t *testing.T) {
	s, _ := newTestStore(DefaultMaxBytes)
	qm, q := query(t, "nx.example.", dns.TypeA, false, false)
	for range 2 {
		s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeNameError), UDP, hit())
	}
	r, ok := answer(t, s, q, 9)
	if !ok {
		t.Fatal("NXDOMAIN not answered")
	}
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].Header().Ttl != 20 {
		t.Errorf("answer = %v, want NXDOMAIN with its SOA at TTL 20", r)
	}
}

func TestKeyIsTheWholeQuery(t *testing.T) {
	s, _ := newTestStore(DefaultMaxBytes)
	qm, q := query(t, "a.example.", dns.TypeA, true, false)
	for range 2 {
		s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), UDP, hit())
	}
	for name, other := range map[string]func() *dns.Msg{
		"letter case": func() *dns.Msg { m, _ := query(t, "A.example.", dns.TypeA, true, false); return m },
		"type":        func() *dns.Msg { m, _ := query(t, "a.example.", dns.TypeAAAA, true, false); return m },
		"DO bit":      func() *dns.Msg { m, _ := query(t, "a.example.", dns.TypeA, true, true); return m },
		"no EDNS":     func() *dns.Msg { m, _ := query(t, "a.example.", dns.TypeA, false, false); return m },
		"buffer size": func() *dns.Msg {
			m, _ := query(t, "a.example.", dns.TypeA, false, false)
			m.SetEdns0(512, false)
			return m
		},
		"CD bit": func() *dns.Msg {
			m, _ := query(t, "a.example.", dns.TypeA, true, false)
			m.CheckingDisabled = true
			return m
		},
		"RD bit": func() *dns.Msg {
			m, _ := query(t, "a.example.", dns.TypeA, true, false)
			m.RecursionDesired = false
			return m
		},
	} {
		b, err := other().Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Answer(b, UDP, false, nil); ok {
			t.Errorf("a query that differs in %s was answered with another query's answer", name)
		}
	}
}

func TestStoreIsBounded(t *testing.T) {
	qm, q := query(t, "aa.example.", dns.TypeA, false, false)
	one := len(q) - 2 + len(cacheAnswer(t, qm, 20, dns.RcodeSuccess)) + 2*2 + entryOverhead // two TTL offsets
	s, _ := newTestStore(5 * one)
	for i := range 50 {
		qm, q := query(t, dns.Fqdn(string(rune('a'+i%26))+string(rune('a'+i/26))+".example"), dns.TypeA, false, false)
		proto := i % 2 // both transports share the bound
		s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), proto, hit())
		if s.bytes > 5*one {
			t.Fatalf("after %d answers the store holds %d bytes, over its bound %d", i+1, s.bytes, 5*one)
		}
	}
	if s.Len() != 5 {
		t.Errorf("Len() = %d after 50 answers, want the 5 that fit", s.Len())
	}
	// An answer over MaxAnswer is never kept.
	big := new(dns.Msg)
	big.SetReply(qm)
	for i := range 300 {
		big.Answer = append(big.Answer, &dns.A{Hdr: dns.RR_Header{Name: "aa.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 20}, A: []byte{10, 0, byte(i >> 8), byte(i)}})
	}
	b, err := big.Pack()
	if err != nil {
		t.Fatal(err)
	}
	s, _ = newTestStore(DefaultMaxBytes)
	for range 3 {
		s.Learn(q, b, TCP, hit())
	}
	if s.Len() != 0 {
		t.Errorf("kept a %d-byte answer, over MaxAnswer (%d)", len(b), MaxAnswer)
	}
}

// FuzzStore feeds the store arbitrary queries and answers: it must never
// panic, and whatever it answers is the learnt answer byte for byte but
// for the ID and TTL fields, with a TTL no higher than the learnt one.
func FuzzStore(f *testing.F) {
	qm, q := query(f, "a.example.", dns.TypeA, true, true)
	f.Add(q, cacheAnswer(f, qm, 20, dns.RcodeSuccess), q)
	f.Add(q, cacheAnswer(f, qm, 20, dns.RcodeNameError), append(bytes.Clone(q), 0))
	f.Add([]byte{0, 0, 1, 0, 0, 1}, []byte{0xc0, 0x0c}, []byte{})
	f.Fuzz(func(t *testing.T, q, resp, other []byte) {
		s, c := newTestStore(1500)
		for range 3 {
			s.Learn(q, resp, UDP, hit())
		}
		c.t = c.t.Add(1500 * time.Millisecond)
		for _, ask := range [][]byte{q, other} {
			out, ok := s.Answer(ask, UDP, false, nil)
			if !ok {
				continue
			}
			at, ttl, good := ttls(resp)
			if !good || len(out) != len(resp) {
				t.Fatalf("answered %x from an answer that cannot be served %x", out, resp)
			}
			got, want := bytes.Clone(out), bytes.Clone(resp)
			for _, b := range [][]byte{got, want} {
				b[0], b[1] = 0, 0
				for _, i := range at {
					copy(b[i:i+4], "\x00\x00\x00\x00")
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("answer %x differs from learnt %x beyond ID and TTLs", out, resp)
			}
			if binary.BigEndian.Uint16(out) != binary.BigEndian.Uint16(ask) {
				t.Fatal("answer does not carry the query's ID")
			}
			for _, i := range at {
				if got := binary.BigEndian.Uint32(out[i:]); got >= ttl || got <= testParams.HandBack {
					t.Fatalf("TTL %d served 1.5 s after learning %d (hand-back %d)", got, ttl, testParams.HandBack)
				}
			}
		}
	})
}

func TestMayHold(t *testing.T) {
	s, _ := newTestStore(DefaultMaxBytes)
	qm, q := query(t, "Mixed.Example.", dns.TypeA, false, false)
	if s.MayHold("mixed.example.", dns.TypeA) {
		t.Fatal("an empty store may hold an answer")
	}
	s.Learn(q, cacheAnswer(t, qm, 20, dns.RcodeSuccess), UDP, hit())
	for _, name := range []string{"Mixed.Example.", "mixed.example.", "MIXED.EXAMPLE."} {
		if !s.MayHold(name, dns.TypeA) {
			t.Errorf("MayHold(%s, A) = false with Mixed.Example. A learnt: a miss of it would not forget it", name)
		}
	}
	if s.MayHold("mixed.example.", dns.TypeAAAA) {
		t.Error("MayHold(AAAA) = true with only A learnt")
	}
	s.Learn(q, nil, UDP, miss())
	if s.MayHold("mixed.example.", dns.TypeA) || s.Len() != 0 {
		t.Errorf("after the cache passed the query on: MayHold true or %d entries left", s.Len())
	}
}
