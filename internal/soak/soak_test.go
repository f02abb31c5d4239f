package soak

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/internal/dnsbench"
	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// limit is the memory the soak holds the cache to, and its GOMEMLIMIT:
// half the DaemonSet's 256 MiB. No mix here fills every cache (names expire
// after 5 s); BenchmarkFullCacheRSS does, and the DaemonSet's limit is set
// from it.
const limit = 128 << 20

// mixFor is how long each hostile mix runs; cool is the pause after it,
// when memory is read again.
var mixFor, cool = envDuration("SOAK_MIX", 8*time.Second), 6 * time.Second

type mix struct {
	name string
	// cpuFlood marks a mix that only burns CPU: the good client's failures
	// are counted, not failed on.
	cpuFlood bool
	run      func(ctx context.Context, e *env) string // returns a note
}

// env is the running node-cache and what the mixes need.
type env struct {
	t        *testing.T
	addr     string // DNS, UDP and TCP
	metrics  string
	dir      string // kube-dns ConfigMap directory
	up       *upstream
	pid      int
	upstream string
}

func TestSoak(t *testing.T) {
	bin := os.Getenv("LRPDNS_NODE_CACHE_BIN")
	if bin == "" {
		t.Skip("set LRPDNS_NODE_CACHE_BIN (make soak does)")
	}
	up, err := startUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	dir := t.TempDir()
	kubeDNS := filepath.Join(dir, "kube-dns")
	must(t, os.MkdirAll(kubeDNS, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644))
	writeConfigMap(t, kubeDNS, nil, up.addr)
	port := dnstest.FreePort(t)
	e := &env{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), metrics: dnstest.FreeAddr(t), dir: kubeDNS, up: up, upstream: up.addr}
	ready := dnstest.FreeAddr(t)
	args := []string{"--cluster-dns", up.addr, "--resolv-conf", filepath.Join(dir, "resolv.conf"),
		"--kube-dns-config-dir", kubeDNS, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--health-addr", dnstest.FreeAddr(t), "--ready-addr", ready, "--metrics-addr", e.metrics,
		"--lameduck", "0s", "--allow-loopback-resolvers", "--kube-dns-ips", "127.0.0.9"}
	cg, cgErr := newCgroup(fmt.Sprintf("lrpdns-soak-%d", os.Getpid()), limit)
	var cmd *exec.Cmd
	if cgErr == nil {
		defer cg.remove()
		// Into the cgroup before exec, so that every page is charged to it.
		cmd = exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, cg.procs(), bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = append(os.Environ(), "GOMEMLIMIT="+strconv.Itoa(limit))
	logs, err := os.Create(filepath.Join(artifacts(t), "node-cache.log"))
	must(t, err)
	defer logs.Close()
	cmd.Stdout, cmd.Stderr = logs, logs
	must(t, cmd.Start())
	e.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// Gone before its cgroup is removed (the deferred remove runs next).
		if cmd.Process.Kill() == nil {
			<-exited
		}
	}()
	if cgErr == nil {
		t.Logf("node-cache (pid %d) in memory cgroup %s, limit %d MiB, GOMEMLIMIT=%d", e.pid, cg.dir, limit>>20, limit)
	} else {
		t.Logf("no memory cgroup (%v): GOMEMLIMIT=%d and an RSS check only", cgErr, limit)
	}
	if !waitReady("http://"+ready+"/ready", 15*time.Second) {
		t.Fatalf("node-cache never ready; see %s", logs.Name())
	}
	warm := e.warm(t)

	mixes := []mix{
		{name: "malformed packets (2,000/s UDP, 100/s TCP connections)", run: malformed},
		{name: "upstream hangs (every query dropped)", run: upstreamDown},
		{name: "3,000 held TCP connections", run: heldConnections},
		{name: "cache pressure (a new name per query)", run: cachePressure},
		{name: "cache pressure in 32 stub domains (the most allowed)", run: stubPressure},
		{name: "config faults and 20 SIGHUPs", run: configFaults},
		{name: "TCP pipelining flood", cpuFlood: true, run: tcpFlood},
		{name: "UDP flood of cache hits", cpuFlood: true, run: udpFlood},
	}
	type row struct {
		mix                   mix
		sent, failed, slow    int64
		latMax                time.Duration
		rssMax, rssAfter      uint64
		readyMax              time.Duration
		readySlow, readyPolls int
		note                  string
	}
	var rows []row
	for _, m := range mixes {
		ctx, cancel := context.WithTimeout(context.Background(), mixFor)
		mon := e.monitor(ctx, "http://"+ready+"/ready", warm)
		note := m.run(ctx, e)
		<-ctx.Done()
		cancel()
		r := mon.stop()
		time.Sleep(cool)
		after, _ := dnsbench.RSS(e.pid)
		rows = append(rows, row{mix: m, sent: r.sent, failed: r.failed, slow: r.slow, latMax: r.latMax, rssMax: r.rssMax, rssAfter: after,
			readyMax: r.readyMax, readySlow: r.readySlow, readyPolls: r.readyPolls, note: note})
		select {
		case err := <-exited:
			t.Fatalf("node-cache exited during %q: %v; see %s", m.name, err, logs.Name())
		default:
		}
		if m.cpuFlood {
			t.Logf("%s: good client %d sent, %d failed (CPU flood: counted)", m.name, r.sent, r.failed)
		} else if r.failed > 0 {
			t.Errorf("%s: good client %d of %d queries failed: %v", m.name, r.failed, r.sent, r.failures)
		}
		if r.rssMax >= limit {
			t.Errorf("%s: RSS reached %d MiB, limit %d MiB", m.name, r.rssMax>>20, limit>>20)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| mix (%v each) | good client sent / failed | its slowest answer (over 500 ms) | max RSS | RSS %v after | /ready slowest (polls over 1 s) | |\n| --- | --- | --- | --- | --- | --- | --- |\n", mixFor, cool)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d / %d | %v (%d) | %.1f MiB | %.1f MiB | %v (%d of %d) | %s |\n", r.mix.name, r.sent, r.failed, r.latMax.Round(time.Millisecond), r.slow,
			float64(r.rssMax)/(1<<20), float64(r.rssAfter)/(1<<20), r.readyMax.Round(time.Millisecond), r.readySlow, r.readyPolls, r.note)
	}
	if cg != nil {
		peak, _ := cg.peak()
		ooms, _ := cg.ooms()
		fmt.Fprintf(&b, "\nmemory cgroup: peak %.1f MiB of %d MiB, %d OOM kills\n", float64(peak)/(1<<20), limit>>20, ooms)
		if ooms > 0 {
			t.Errorf("the kernel killed %d processes for the memory limit", ooms)
		}
	}
	t.Log("\n" + b.String())
	_ = os.WriteFile(filepath.Join(artifacts(t), "soak.md"), []byte(b.String()), 0o644)
}

// warm caches the good client's names and returns them.
func (e *env) warm(t *testing.T) []string {
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("good%d.example.com.", i))
		names = append(names, fmt.Sprintf("good%d.default.svc.cluster.local.", i))
	}
	for _, n := range names {
		if _, err := query("udp", e.addr, n, 2*time.Second); err != nil {
			t.Fatalf("warming %s: %v", n, err)
		}
	}
	return names
}

type monitorResult struct {
	sent, failed          int64
	slow                  int64 // answered after more than 500 ms
	latMax                time.Duration
	failures              []string
	rssMax                uint64
	readyMax              time.Duration
	readySlow, readyPolls int
}

type monitor struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	res monitorResult
}

// monitor runs the good client (a warm name every 20 ms over UDP, 2 s
// timeout), samples RSS every 100 ms and polls /ready every 250 ms with the
// probe's timeout left out, to measure how long it takes.
func (e *env) monitor(ctx context.Context, readyURL string, names []string) *monitor {
	m := &monitor{}
	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			n := names[i%len(names)]
			start := time.Now()
			_, err := query("udp", e.addr, n, 2*time.Second)
			took := time.Since(start)
			m.mu.Lock()
			m.res.sent++
			if err == nil {
				m.res.latMax = max(m.res.latMax, took)
				if took > 500*time.Millisecond {
					m.res.slow++
				}
			}
			if err != nil {
				m.res.failed++
				if len(m.res.failures) < 5 {
					m.res.failures = append(m.res.failures, n+": "+err.Error())
				}
			}
			m.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer m.wg.Done()
		for ctx.Err() == nil {
			if rss, err := dnsbench.RSS(e.pid); err == nil {
				m.mu.Lock()
				m.res.rssMax = max(m.res.rssMax, rss)
				m.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() {
		defer m.wg.Done()
		c := &http.Client{Timeout: 10 * time.Second}
		for ctx.Err() == nil {
			start := time.Now()
			resp, err := c.Get(readyURL)
			d := time.Since(start)
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				d = c.Timeout // not ready counts as the slowest
			}
			m.mu.Lock()
			m.res.readyPolls++
			m.res.readyMax = max(m.res.readyMax, d)
			if d > time.Second {
				m.res.readySlow++
			}
			m.mu.Unlock()
			time.Sleep(250 * time.Millisecond)
		}
	}()
	return m
}

func (m *monitor) stop() monitorResult {
	m.wg.Wait()
	return m.res
}

func query(network, addr, name string, timeout time.Duration) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.Exchange(q, addr)
	if err == nil && r.Rcode != dns.RcodeSuccess {
		err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	return r, err
}

// --- the mixes ---

func malformed(ctx context.Context, e *env) string {
	var udp, tcp atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		udpSender(&wg, e.addr, func(c net.Conn) {
			buf := make([]byte, 600)
			tick := time.NewTicker(time.Millisecond) // 1,000/s from each of 2
			defer tick.Stop()
			for ctx.Err() == nil {
				<-tick.C
				n := int(buf[0]) * 2 % 600
				_, _ = rand.Read(buf[:max(n, 1)])
				if len(buf) > 2 {
					buf[2] &^= 0x80 // a query, not a response (responses are dropped unread)
				}
				_, _ = c.Write(buf[:max(n, 1)])
				udp.Add(1)
			}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 600)
			tick := time.NewTicker(20 * time.Millisecond) // 50/s from each of 2
			defer tick.Stop()
			for ctx.Err() == nil {
				<-tick.C
				c, err := net.DialTimeout("tcp", e.addr, time.Second)
				if err != nil {
					continue
				}
				_, _ = rand.Read(buf)
				_, _ = c.Write(buf)
				c.Close()
				tcp.Add(1)
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d UDP packets, %d TCP connections of random bytes", udp.Load(), tcp.Load())
}

func heldConnections(ctx context.Context, e *env) string {
	refused0 := e.metric("lrpdns_node_cache_tcp_connections_refused_total")
	var conns []net.Conn
	for range 3000 {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			continue
		}
		conns = append(conns, c)
	}
	// Keep them alive: a query every 2 s (the idle timeout is 10 s, the
	// read timeout for the first query 3 s).
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		msg := packed("held.example.com.", true)
		for ctx.Err() == nil {
			for _, c := range conns {
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
				_, _ = c.Write(msg)
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	open := e.metric("lrpdns_node_cache_tcp_connections")
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	return fmt.Sprintf("%d dialled; the cache held %.0f, closed %.0f at once", len(conns), open, e.metric("lrpdns_node_cache_tcp_connections_refused_total")-refused0)
}

func cachePressure(ctx context.Context, e *env) string {
	n := askNewNames(ctx, e.addr, func(w, i int) string {
		return fmt.Sprintf("p%d-%d-%d.example.com.", w, i, time.Now().UnixNano())
	})
	return fmt.Sprintf("%d new names", n)
}

// askNewNames has four workers ask name(worker, i) over UDP, one query
// after another, until ctx ends, and returns how many they sent.
func askNewNames(ctx context.Context, addr string, name func(w, i int) string) int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, _ = query("udp", addr, name(w, i), time.Second)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

// stubPressure fills the caches of as many stub domains as the cache
// accepts (each a server block with its own cache): the worst memory a
// configuration allows.
func stubPressure(ctx context.Context, e *env) string {
	stubs := map[string][]string{}
	for i := range 32 {
		stubs[fmt.Sprintf("s%d.example", i)] = []string{e.upstream}
	}
	gen0 := e.metric("lrpdns_node_cache_config_generation")
	writeConfigMap(e.t, e.dir, map[string]string{"stubDomains": jsonMap(stubs)}, e.upstream)
	for e.metric("lrpdns_node_cache_config_generation") == gen0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	n := askNewNames(ctx, e.addr, func(w, i int) string { return fmt.Sprintf("p%d-%d.s%d.example.", w, i, i%32) })
	writeConfigMap(e.t, e.dir, nil, e.upstream)
	return fmt.Sprintf("%d new names across 32 stub domains", n)
}

func upstreamDown(ctx context.Context, e *env) string {
	e.up.down.Store(true)
	<-ctx.Done()
	e.up.down.Store(false)
	return "warm names answered from the cache, or stale"
}

func configFaults(ctx context.Context, e *env) string {
	errs0 := e.metric("lrpdns_node_cache_config_errors_total")
	many := map[string][]string{}
	for i := range 1000 {
		many[fmt.Sprintf("d%d.example", i)] = []string{e.upstream}
	}
	faults := []map[string]string{
		{"stubDomains": jsonMap(many)},
		{"stubDomains": `{"big.example": ["` + strings.Repeat("9", 10<<20) + `"]}`},
		{"stubDomains": fmt.Sprintf(`{"self.example": [%q]}`, e.addr)},
		{"stubDomains": `{"bad": `},
	}
	for i, f := range faults {
		writeConfigMap(e.t, e.dir, f, e.upstream)
		for range 5 {
			_ = syscall.Kill(e.pid, syscall.SIGHUP)
			time.Sleep(100 * time.Millisecond)
		}
		if i == len(faults)-1 {
			break
		}
	}
	writeConfigMap(e.t, e.dir, nil, e.upstream)
	<-ctx.Done()
	return fmt.Sprintf("%d faults (1,000 stub domains, a 10 MB value, a self-pointing stub, broken JSON), each refused: config_errors_total +%.0f", len(faults), e.metric("lrpdns_node_cache_config_errors_total")-errs0)
}

func tcpFlood(ctx context.Context, e *env) string {
	var sent atomic.Int64
	var wg sync.WaitGroup
	msg := packed("good0.example.com.", true)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", e.addr, time.Second)
				if err != nil {
					continue
				}
				go func() { _, _ = bufio.NewReader(c).WriteTo(discard{}) }()
				for range 100 {
					if _, err := c.Write(msg); err != nil {
						break
					}
					sent.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
				c.Close()
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d pipelined queries on 16 connections", sent.Load())
}

func udpFlood(ctx context.Context, e *env) string {
	paused0 := e.metric("lrpdns_node_cache_udp_reads_paused_total")
	var sent atomic.Int64
	var wg sync.WaitGroup
	b := packed("good0.example.com.", false)
	for range 8 {
		wg.Add(1)
		udpSender(&wg, e.addr, func(c net.Conn) {
			go func() { _, _ = bufio.NewReader(c).WriteTo(discard{}) }()
			for ctx.Err() == nil {
				_, _ = c.Write(b)
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("%d queries from 8 sockets, not waiting for answers; reads paused for in-flight queries: %.0f", sent.Load(), e.metric("lrpdns_node_cache_udp_reads_paused_total")-paused0)
}

// udpSender runs send on a UDP socket connected to addr, in a goroutine
// that marks wg done.
func udpSender(wg *sync.WaitGroup, addr string, send func(c net.Conn)) {
	go func() {
		defer wg.Done()
		c, err := net.Dial("udp", addr)
		if err != nil {
			return
		}
		defer c.Close()
		send(c)
	}()
}

// packed is an A query for name on the wire, with TCP's length prefix
// when tcp.
func packed(name string, tcp bool) []byte {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	b, _ := q.Pack()
	if !tcp {
		return b
	}
	return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
