package dnsbench

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	r := Result{}
	for i := 1; i <= 100; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond, 0.001: time.Millisecond} {
		if got := r.Percentile(p); got != want {
			t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if got := (Result{}).Percentile(0.5); got != 0 {
		t.Errorf("empty Percentile = %v, want 0", got)
	}
}

func TestLoadCountsEveryQuery(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.1"), TTL: 30})
	res, err := Load(s.Addr.String(), 500, 4, func(i int) string { return fmt.Sprintf("q%d.example.com.", i) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures != 0 || len(res.Latencies) != 500 || s.Count() != 500 {
		t.Errorf("Load: %d failures, %d latencies, server saw %d; want 0, 500, 500", res.Failures, len(res.Latencies), s.Count())
	}
	if res.QPS() <= 0 || res.Percentile(0.99) < res.Percentile(0.5) {
		t.Errorf("QPS %v, p50 %v, p99 %v", res.QPS(), res.Percentile(0.5), res.Percentile(0.99))
	}
}

func TestRSS(t *testing.T) {
	t.Parallel()
	rss, err := RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("RSS(self) = %d, %v; want at least 1 MiB", rss, err)
	}
}
