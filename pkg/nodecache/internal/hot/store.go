package hot

import (
	"bytes"
	"encoding/binary"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

// Transports, each with its own answers (truncation differs).
const (
	UDP = iota
	TCP
)

// DefaultMaxBytes bounds a store's answers and keys (and entryOverhead
// for each): 8 MiB hold about 25,000 typical answers.
const DefaultMaxBytes = 8 << 20

// MaxAnswer is the largest answer kept; a larger one is always the chain's.
const MaxAnswer = 4096

// entryOverhead is what an entry costs besides its key and answer: the
// entry, its TTL offsets, and the map's share (measured roughly).
const entryOverhead = 256

// Store holds the answers of one configuration.
type Store struct {
	maxBytes int
	now      func() time.Time

	mu      sync.RWMutex
	entries [2]map[string]*entry  // by transport, keyed by the query after its ID
	bytes   int                   // the entries' size
	sets    map[setKey]*metricSet // shared by the entries with the same labels
	// questions counts the entries by questionHash, so that a miss of a
	// question the store never held costs no packing (MayHold).
	questions map[uint64]int
}

type entry struct {
	resp    []byte   // as the chain wrote it
	ttlAt   []uint16 // where the TTLs are (OPT's excepted)
	ttl     uint32   // their value when learnt
	learned time.Time
	hits    int    // cache hits the chain gave this query since its last miss
	qhash   uint64 // questionHash of its question
	p       *Params
	m       *metricSet // nil when the block is not counted
}

// NewStore returns an empty store of at most maxBytes (see DefaultMaxBytes).
func NewStore(maxBytes int) *Store {
	return &Store{maxBytes: maxBytes, now: time.Now, entries: [2]map[string]*entry{{}, {}}, sets: map[setKey]*metricSet{}, questions: map[uint64]int{}}
}

func (e *entry) size(key string) int { return len(key) + len(e.resp) + 2*len(e.ttlAt) + entryOverhead }

// Answer writes to out (reusing its storage) the answer for query q over
// proto, if the store has one that may be served now; v6 is the client's
// family, for the metrics. The answer is the one learnt, with q's ID and
// the TTLs counted down.
func (s *Store) Answer(q []byte, proto int, v6 bool, out []byte) ([]byte, bool) {
	if len(q) < 12 {
		return out, false
	}
	s.mu.RLock()
	e := s.entries[proto][string(q[2:])]
	s.mu.RUnlock()
	if e == nil || e.hits < e.p.Warm {
		return out, false
	}
	start := s.now()
	age := start.Sub(e.learned)
	if age < 0 || age >= Lifetime {
		return out, false
	}
	// Rounded up: the TTL is never more than the cache's own, which
	// counts whole seconds from when it stored the answer.
	elapsed := uint32((age + time.Second - 1) / time.Second)
	if e.ttl < elapsed || e.ttl-elapsed <= e.p.HandBack {
		return out, false
	}
	ttl := e.ttl - elapsed
	out = append(out[:0], e.resp...)
	out[0], out[1] = q[0], q[1]
	for _, at := range e.ttlAt {
		binary.BigEndian.PutUint32(out[at:], ttl)
	}
	e.m.report(v6, len(q), len(out), start)
	return out, true
}

// Eligible says whether the store may learn an answer to r: a standard
// query with one question and nothing but an OPT record besides.
func Eligible(r *dns.Msg) bool {
	if r.Response || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 || len(r.Answer) != 0 || len(r.Ns) != 0 {
		return false
	}
	switch len(r.Extra) {
	case 0:
		return true
	case 1:
		_, ok := r.Extra[0].(*dns.OPT)
		return ok
	}
	return false
}

// Learn takes what the chain wrote (resp) for query q (packed, eligible)
// over proto, as c saw it. A query the cache passed on starts counting
// its hits again; one the cache answered counts one more and its answer
// is kept, if it can be served: NOERROR or NXDOMAIN, records that share
// one TTL above the block's hand-back that is not serve_stale's.
func (s *Store) Learn(q, resp []byte, proto int, c *Capture) {
	if c.Params == nil || len(q) < 12 {
		return
	}
	key := string(q[2:])
	if c.Passed() {
		s.mu.Lock()
		s.deleteLocked(proto, key)
		s.mu.Unlock()
		return
	}
	if resp == nil || len(resp) > MaxAnswer {
		return
	}
	ttlAt, ttl, ok := ttls(resp)
	if !ok || ttl <= c.Params.HandBack || (c.Params.StaleTTL > 0 && ttl == c.Params.StaleTTL) {
		return
	}
	if rc := resp[3] & 0xF; resp[2]&0x80 == 0 || (rc != dns.RcodeSuccess && rc != dns.RcodeNameError) {
		return
	}
	name, off, err := dns.UnpackDomainName(q, 12)
	if err != nil || off+4 > len(q) {
		return
	}
	qtype := binary.BigEndian.Uint16(q[off:])
	qhash := questionHash(name, qtype)
	e := &entry{resp: bytes.Clone(resp), ttlAt: ttlAt, ttl: ttl, learned: s.now(), hits: 1, p: c.Params, qhash: qhash}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Under the lock: a miss that forgot the query in between restarts
	// the count.
	if old := s.entries[proto][key]; old != nil {
		e.hits, e.m = old.hits+1, old.m
	} else {
		e.m = s.metricSetLocked(c, name, qtype, hasDO(q, off+4), resp[3]&0xF, proto)
	}
	s.deleteLocked(proto, key)
	if e.size(key) > s.maxBytes {
		return
	}
	for from := proto; s.bytes+e.size(key) > s.maxBytes; { // evict arbitrary ones: map order is random
		if len(s.entries[from]) == 0 {
			from = 1 - from
		}
		for k := range s.entries[from] {
			s.deleteLocked(from, k)
			break
		}
	}
	s.entries[proto][key] = e
	s.bytes += e.size(key)
	s.questions[qhash]++
}

func (s *Store) deleteLocked(proto int, key string) {
	if old, ok := s.entries[proto][key]; ok {
		s.bytes -= old.size(key)
		delete(s.entries[proto], key)
		if s.questions[old.qhash]--; s.questions[old.qhash] <= 0 {
			delete(s.questions, old.qhash)
		}
	}
}

// MayHold says whether the store may hold an answer to a query for name
// and qtype (as the query unpacks: any letter case): false means surely
// not, so a query the cache passed on has nothing here to forget.
func (s *Store) MayHold(name string, qtype uint16) bool {
	h := questionHash(name, qtype)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.questions[h] > 0
}

// questionHash is FNV-1a of name in lower case (ASCII, as DNS compares
// names) and qtype.
func questionHash(name string, qtype uint16) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(name) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * 1099511628211
	}
	h = (h ^ uint64(qtype>>8)) * 1099511628211
	return (h ^ uint64(qtype&0xff)) * 1099511628211
}

// Len is the number of queries the store knows.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.entries[UDP]) + len(s.entries[TCP])
}

// ttls finds the TTL fields of a packed message's records, OPT's excepted,
// and the value they share; ok is false when the message does not parse to
// its end, has no such record, or its TTLs differ (the cache plugin gives
// every record of an answer the same TTL).
func ttls(b []byte) (at []uint16, ttl uint32, ok bool) {
	if len(b) < 12 || len(b) > MaxAnswer {
		return nil, 0, false
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rrs := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	for range qd {
		if off = skipName(b, off); off < 0 || off+4 > len(b) {
			return nil, 0, false
		}
		off += 4
	}
	for range rrs {
		if off = skipName(b, off); off < 0 || off+10 > len(b) {
			return nil, 0, false
		}
		if binary.BigEndian.Uint16(b[off:]) != dns.TypeOPT {
			t := binary.BigEndian.Uint32(b[off+4:])
			if len(at) > 0 && t != ttl {
				return nil, 0, false
			}
			ttl = t
			at = append(at, uint16(off+4)) // #nosec G115 -- off < len(b) <= MaxAnswer
		}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return nil, 0, false
		}
	}
	return at, ttl, off == len(b) && len(at) > 0
}

// skipName returns the offset after the name at off, -1 if it runs out or
// uses a reserved label type.
func skipName(b []byte, off int) int {
	for off < len(b) {
		l := int(b[off])
		switch l & 0xC0 {
		case 0x00:
			if l == 0 {
				return off + 1
			}
			off += 1 + l
		case 0xC0:
			if off+2 > len(b) {
				return -1
			}
			return off + 2
		default:
			return -1
		}
	}
	return -1
}

// zoneOf is the longest of zones that holds qname, as CoreDNS's metrics
// plugin labels it.
func zoneOf(zones []string, qname string) string {
	if z := plugin.Zones(zones).Matches(qname); z != "" {
		return z
	}
	return "."
}
