package nodecache

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// harness runs a node-cache in-process against two recording DNS servers:
// "cluster" plays kube-dns-upstream and "node" the node's resolver.
type harness struct {
	t       *testing.T
	cluster *dnstest.Server
	node    *dnstest.Server
	opts    Options
	dns     map[string]string // where to send queries, by network
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T, mutate func(*harness)) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}}
	h.cluster = startDNS(t, "10.96.0.99", 30)
	h.node = startDNS(t, "192.0.2.1", 30)
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	writeFile(t, resolv, "nameserver 127.0.0.1\n")
	h.opts = DefaultOptions()
	h.opts.ClusterDNS = []string{h.cluster.Addr.String()}
	h.opts.ResolvConf = resolv
	h.opts.resolverPort = h.node.Addr.Port()
	h.opts.KubeDNSConfigDir = filepath.Join(dir, "kube-dns")
	h.opts.Bind = []string{"127.0.0.1"}
	h.opts.AllowLoopbackResolvers = true // every server here is on loopback
	h.opts.Port = 0
	h.opts.HealthAddr, h.opts.ReadyAddr, h.opts.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", metricsAddr(t)
	h.opts.Lameduck = 0
	h.opts.CheckInterval = time.Hour
	if mutate != nil {
		mutate(h)
	}
	s, err := Start(h.opts, slog.New(slog.NewTextHandler(h.logs, nil)))
	if err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	h.dns = map[string]string{}
	for _, a := range s.Addrs() { // with port 0, TCP and UDP get different ports
		_, port, _ := net.SplitHostPort(a.String())
		h.dns[a.Network()] = net.JoinHostPort("127.0.0.1", port)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- s.Serve(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Serve() error = %v", err)
		}
	case <-time.After(30 * time.Second):
		// A shutdown that hangs: say where, rather than wait for go test's
		// timeout (a make test run here once hung to it, its stack cut).
		buf := make([]byte, 1<<20)
		h.t.Errorf("Serve() has not returned 30 s after its context ended; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// query asks the node-cache for name's A record over network ("udp"/"tcp").
func (h *harness) query(network, name string) (*dns.Msg, error) {
	return exchange(network, h.dns[network], name)
}

func exchange(network, addr, name string) (*dns.Msg, error) {
	return exchangeType(network, addr, name, dns.TypeA)
}

func exchangeType(network, addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// mustAnswer asserts that name resolves to want.
func (h *harness) mustAnswer(name, want string) *dns.Msg {
	h.t.Helper()
	r, err := h.query("udp", name)
	if err != nil {
		h.t.Fatalf("query %s: %v", name, err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		h.t.Fatalf("query %s: rcode %s, %d answers; want one A record", name, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if got := r.Answer[0].(*dns.A).A.String(); got != want {
		h.t.Fatalf("query %s = %s, want %s", name, got, want)
	}
	return r
}

// wantGeneration asserts that the config generation becomes want, and no
// more: the new server answers queries a moment before the reload that
// started it returns and counts it.
func (h *harness) wantGeneration(want float64) {
	h.t.Helper()
	var gen float64
	eventually(2*time.Second, func() bool {
		_, gen = h.metric("lrpdns_node_cache_config_generation")
		return gen >= want
	})
	if gen != want {
		h.t.Errorf("config_generation = %v, want %v", gen, want)
	}
}

// metric scrapes the metrics endpoint and returns the sample whose name and
// labels start with prefix.
func (h *harness) metric(prefix string) (string, float64) {
	h.t.Helper()
	// CoreDNS's prometheus plugin closes and opens its listener again on
	// a reload: a scrape in between is refused, so try for a while.
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + h.opts.MetricsAddr + "/metrics"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		h.t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				h.t.Fatalf("metric line %q: %v", line, err)
			}
			return line[:i], v
		}
	}
	h.t.Fatalf("metric %s not exposed", prefix)
	return "", 0
}

// metricLine is the name and labels of the sample that starts with prefix.
func (h *harness) metricLine(prefix string) string {
	h.t.Helper()
	line, _ := h.metric(prefix)
	return line
}

// eventually polls cond every 50ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

func startDNS(t *testing.T, answer string, ttl uint32) *dnstest.Server {
	t.Helper()
	return dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr(answer), TTL: ttl})
}

var usedMetricsAddrs sync.Map

// metricsAddr returns a metrics address no instance in this process has used:
// CoreDNS's prometheus plugin forgets an address on reload but not on final
// shutdown, so a later instance on a reused address would never listen.
func metricsAddr(t *testing.T) string {
	t.Helper()
	for {
		a := dnstest.FreeAddr(t)
		if _, used := usedMetricsAddrs.LoadOrStore(a, true); !used {
			return a
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeConfigMap updates dir the way the kubelet updates a ConfigMap
// volume: a new timestamped directory, then an atomic swap of the ..data
// symlink, with each key a symlink through ..data.
func writeConfigMap(t *testing.T, dir string, data map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := fmt.Sprintf("..%d", time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		writeFile(t, filepath.Join(dir, ts, k), v)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for k := range data {
		link := filepath.Join(dir, k)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
