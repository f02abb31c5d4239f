package hot

import (
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
