package dnsbench

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
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

// TestCPU: this process, after spinning for 300 ms, shows at least 200 ms
// more; a child that only sleeps shows almost none.
func TestCPU(t *testing.T) {
	// The spin runs until the kernel's own count (getrusage) has 300 ms
	// more, however loaded the machine; /proc must say the same, to its
	// 10 ms ticks.
	self := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	ruBefore := self()
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(30 * time.Second); self()-ruBefore < 300*time.Millisecond && time.Now().Before(end); {
	}
	after, err := CPU(os.Getpid())
	ruAfter := self()
	if got, want := after-before, ruAfter-ruBefore; err != nil || want < 300*time.Millisecond || got < want-30*time.Millisecond || got > want+30*time.Millisecond {
		t.Errorf("CPU(self) went from %v to %v (%v) while getrusage counted %v; want the same to 30 ms, and at least 300 ms", before, after, err, want)
	}
	sleeper := exec.Command("sleep", "1")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	got, err := CPU(sleeper.Process.Pid)
	_ = sleeper.Wait()
	if err != nil || got > 100*time.Millisecond {
		t.Errorf("CPU(sleep 1) = %v, %v; want under 100 ms", got, err)
	}
}
