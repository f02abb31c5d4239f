package hot

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkAnswer is the hot path's work for one hit, without the
// sockets: with CoreDNS's metrics (counted) and without them.
func BenchmarkAnswer(b *testing.B) {
	for _, counted := range []bool{true, false} {
		name := "uncounted"
		if counted {
			name = "counted"
		}
		b.Run(name, func(b *testing.B) {
			s := NewStore(DefaultMaxBytes)
			qm, q := query(b, "h1.example.com.", dns.TypeA, false, false)
			c := hit()
			c.Counted = counted
			for range 10 {
				s.Learn(q, cacheAnswer(b, qm, 29, dns.RcodeSuccess), UDP, c)
			}
			out := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				var ok bool
				if out, ok = s.Answer(q, UDP, false, out); !ok {
					b.Fatal("not answered")
				}
			}
		})
	}
}

// BenchmarkFullStoreHeap fills a store of DefaultMaxBytes with answers of
// one and of 20 A records (with OPT) and reports the heap it holds: the
// store's accounting must not undercount what it costs.
func BenchmarkFullStoreHeap(b *testing.B) {
	for _, records := range []int{1, 20} {
		b.Run(fmt.Sprintf("answers=%dA", records), func(b *testing.B) {
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				s := NewStore(DefaultMaxBytes)
				for i := range 200_000 {
					qm, q := query(b, fmt.Sprintf("name-%d.svc.cluster.local.", i), dns.TypeA, true, false)
					m := new(dns.Msg)
					m.SetReply(qm)
					for j := range records {
						m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qm.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 20}, A: []byte{10, 0, 0, byte(j)}})
					}
					m.SetEdns0(1232, false)
					m.Compress = true
					resp, err := m.Pack()
					if err != nil {
						b.Fatal(err)
					}
					s.Learn(q, resp, UDP, hit())
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(s.Len()), "entries")
				b.ReportMetric(float64(s.bytes)/(1<<20), "accounted-MiB")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
				runtime.KeepAlive(s)
			}
		})
	}
}
