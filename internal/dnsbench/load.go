// Package dnsbench loads a DNS server over UDP on loopback and measures it:
// throughput, latency percentiles and the server process's resident memory.
//
// It is benchmark support only; nothing in a shipped binary imports it.
package dnsbench

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Result is one load run.
type Result struct {
	Queries   int
	Failures  int
	Elapsed   time.Duration
	Latencies []time.Duration // of the answered queries, sorted
}

// QPS is answered queries per second.
func (r Result) QPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Queries-r.Failures) / r.Elapsed.Seconds()
}

// Percentile returns the p-th (0 < p <= 1) latency, nearest-rank.
func (r Result) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	i := int(float64(n)*p+0.999999999) - 1
	return r.Latencies[min(max(i, 0), n-1)]
}

// Load sends n A queries to addr over UDP from workers concurrent clients,
// each waiting for its answer before the next; name(i) names query i.
func Load(addr string, n, workers int, name func(i int) string) (Result, error) {
	var (
		mu  sync.Mutex
		res = Result{Queries: n}
		wg  sync.WaitGroup
	)
	errc := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			lat := make([]time.Duration, 0, n/workers+1)
			failed := 0
			buf := make([]byte, 1500)
			m := new(dns.Msg)
			for i := w; i < n; i += workers {
				m.SetQuestion(name(i), dns.TypeA)
				m.Id = dns.Id()
				out, err := m.Pack()
				if err != nil {
					errc <- err
					return
				}
				t0 := time.Now()
				if ok := exchange(conn, out, buf, m.Id); ok {
					lat = append(lat, time.Since(t0))
				} else {
					failed++
				}
			}
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			res.Failures += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return res, fmt.Errorf("failed to load %s: %w", addr, err)
	}
	slices.Sort(res.Latencies)
	return res, nil
}

// exchange writes one query and reads until the answer with its ID comes
// back with NOERROR, or a second passes.
func exchange(conn net.Conn, query, buf []byte, id uint16) bool {
	if _, err := conn.Write(query); err != nil {
		return false
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		k, err := conn.Read(buf)
		if err != nil {
			return false
		}
		if k >= 4 && uint16(buf[0])<<8|uint16(buf[1]) == id {
			return buf[3]&0x0f == dns.RcodeSuccess
		}
	}
}

// CPU returns the user and system CPU time process pid has used, from
// /proc/PID/stat (in clock ticks of 1/100 s, as Linux reports them to
// user space).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat") //nolint:gosec // a process id, not a path from input
	if err != nil {
		return 0, fmt.Errorf("failed to read process stat: %w", err)
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// RSS returns the resident set size of process pid, from /proc.
func RSS(pid int) (uint64, error) { return Status(pid, "VmRSS") }

// Status returns a memory field of /proc/PID/status (VmRSS, VmHWM, ...) in
// bytes.
func Status(pid int, field string) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status") //nolint:gosec // a process id, not a path from input
	if err != nil {
		return 0, fmt.Errorf("failed to read process status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
