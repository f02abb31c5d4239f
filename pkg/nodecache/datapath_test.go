package nodecache

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

func wantOnly(t *testing.T, s *dnstest.Server, name, network string, n int) {
	t.Helper()
	got := s.QueriesFor(name)
	if len(got) != n {
		t.Fatalf("%s received %d queries for %s, want %d: %v", s.Addr, len(got), name, n, got)
	}
	for _, q := range got {
		if q.Net != network {
			t.Errorf("%s received %s over %s, want %s", s.Addr, name, q.Net, network)
		}
	}
}

func TestClusterNamesGoToClusterDNSOverTCP(t *testing.T) {
	h := newHarness(t, nil)
	for _, name := range []string{"kubernetes.default.svc.cluster.local", "10.0.96.10.in-addr.arpa"} {
		for _, network := range []string{"udp", "tcp"} {
			name := network + "." + name
			h.mustAnswer(name, "10.96.0.99")
			wantOnly(t, h.cluster, name, "tcp", 1)
			wantOnly(t, h.node, name, "", 0)
		}
	}
}

func TestExternalNamesGoToNodeResolverOverUDP(t *testing.T) {
	h := newHarness(t, nil)
	h.mustAnswer("www.example.com", "192.0.2.1")
	wantOnly(t, h.node, "www.example.com", "udp", 1)
	wantOnly(t, h.cluster, "www.example.com", "", 0)
}

func TestStubDomains(t *testing.T) {
	var stub *dnstest.Server
	h := newHarness(t, func(h *harness) {
		stub = startDNS(t, "10.10.0.1", 30)
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
			"stubDomains": fmt.Sprintf(`{"acme.local": [%q]}`, stub.Addr),
		})
	})
	h.mustAnswer("db.acme.local", "10.10.0.1")
	wantOnly(t, stub, "db.acme.local", "udp", 1)
	wantOnly(t, h.node, "db.acme.local", "", 0)
	wantOnly(t, h.cluster, "db.acme.local", "", 0)
}

func TestUpstreamNameserversReplaceNodeResolvers(t *testing.T) {
	var upstream *dnstest.Server
	h := newHarness(t, func(h *harness) {
		upstream = startDNS(t, "198.51.100.7", 30)
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
			"upstreamNameservers": fmt.Sprintf(`[%q]`, upstream.Addr),
		})
	})
	h.mustAnswer("www.example.org", "198.51.100.7")
	wantOnly(t, upstream, "www.example.org", "udp", 1)
	wantOnly(t, h.node, "www.example.org", "", 0)
}

func TestRepeatedQueryIsServedFromCache(t *testing.T) {
	h := newHarness(t, nil)
	for range 5 {
		h.mustAnswer("cached.example.com", "192.0.2.1")
		h.mustAnswer("cached.default.svc.cluster.local", "10.96.0.99")
	}
	wantOnly(t, h.node, "cached.example.com", "udp", 1)
	wantOnly(t, h.cluster, "cached.default.svc.cluster.local", "tcp", 1)
}

func TestServeStaleWhenUpstreamIsDown(t *testing.T) {
	h := newHarness(t, func(h *harness) { h.opts.Cache.SuccessTTL = time.Second })
	first := h.mustAnswer("stale.example.com", "192.0.2.1")
	if ttl := first.Answer[0].Header().Ttl; ttl > 1 {
		t.Fatalf("fresh answer TTL = %d, want at most the 1s cap", ttl)
	}
	h.node.Close()
	time.Sleep(1500 * time.Millisecond) // let the 1s entry expire

	r, err := h.query("udp", "never-seen.example.com")
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("uncached name with the upstream down: %v, %v; want SERVFAIL (is the upstream really down?)", r, err)
	}
	stale := h.mustAnswer("stale.example.com", "192.0.2.1")
	if ttl := stale.Answer[0].Header().Ttl; ttl != 30 {
		t.Errorf("stale answer TTL = %d, want the configured 30", ttl)
	}
}

func TestConfigMapChangeIsLive(t *testing.T) {
	h := newHarness(t, nil) // no periodic check: only file events can trigger the reload
	_, gen0 := h.metric("lrpdns_node_cache_config_generation")
	h.mustAnswer("before.acme.local", "192.0.2.1")

	stub := startDNS(t, "10.10.0.2", 30)
	start := time.Now()
	writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
		"stubDomains": fmt.Sprintf(`{"acme.local": [%q]}`, stub.Addr),
	})
	i := 0
	if !eventually(5*time.Second, func() bool {
		i++
		r, err := h.query("udp", fmt.Sprintf("n%d.acme.local", i))
		return err == nil && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "10.10.0.2"
	}) {
		t.Fatalf("stub domain not served 5s after the ConfigMap changed; logs:\n%s", h.logs)
	}
	t.Logf("stub domain served %s after the ConfigMap changed", time.Since(start).Round(time.Millisecond))
	h.wantGeneration(gen0 + 1)
}

func TestBrokenConfigMapKeepsLastGoodConfig(t *testing.T) {
	var stub *dnstest.Server
	h := newHarness(t, func(h *harness) {
		stub = startDNS(t, "10.10.0.3", 30)
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
			"stubDomains": fmt.Sprintf(`{"acme.local": [%q]}`, stub.Addr),
		})
		h.opts.CheckInterval = 100 * time.Millisecond
	})
	info, _ := h.metric("lrpdns_node_cache_config_info")
	_, errs0 := h.metric("lrpdns_node_cache_config_errors_total")

	writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{"stubDomains": `{"acme.local": ["not-an-ip"]}`})
	if !eventually(5*time.Second, func() bool {
		_, ok := h.metric("lrpdns_node_cache_config_last_reload_successful")
		return ok == 0
	}) {
		t.Fatalf("broken ConfigMap not noticed within 5s; logs:\n%s", h.logs)
	}
	time.Sleep(500 * time.Millisecond) // several periodic checks of the same broken input

	if _, errs := h.metric("lrpdns_node_cache_config_errors_total"); errs != errs0+1 {
		t.Errorf("config_errors_total = %v, want %v (one per refused input)", errs, errs0+1)
	}
	if got, _ := h.metric("lrpdns_node_cache_config_info"); got != info {
		t.Errorf("active config changed to %s, want %s kept", got, info)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "refused new configuration"); n != 1 {
		t.Errorf("logged the refusal %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, `stubDomains[\"acme.local\"]`) || !strings.Contains(logs, "not-an-ip") {
		t.Errorf("log does not name the key and value:\n%s", logs)
	}
	h.mustAnswer("still.acme.local", "10.10.0.3")
	wantOnly(t, stub, "still.acme.local", "udp", 1)
}

func TestDualStackListener(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	h := newHarness(t, func(h *harness) { h.opts.Bind = nil }) // all addresses, both families
	for _, network := range []string{"udp", "tcp"} {
		_, port, _ := net.SplitHostPort(h.dns[network])
		for _, addr := range []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)} {
			r, err := exchange(network, addr, "both.example.com")
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("query over %s to %s: %v, %v", network, addr, r, err)
			}
		}
	}
}

// TestLoopingConfigMapIsRefusedWhileServing: a stub domain, then
// upstreamNameservers, pointing at the cache itself would make CoreDNS's
// loop plugin stop the process (on every node: the ConfigMap is the
// cluster's). Each is refused, named in the log, and the cache keeps serving.
func TestLoopingConfigMapIsRefusedWhileServing(t *testing.T) {
	port := dnstest.FreePort(t)
	h := newHarness(t, func(h *harness) {
		h.opts.Port = port
		h.opts.CheckInterval = 100 * time.Millisecond
	})
	self := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i, cm := range []map[string]string{
		{"stubDomains": fmt.Sprintf(`{"self.local": [%q]}`, self)},
		{"upstreamNameservers": fmt.Sprintf(`[%q]`, self)},
	} {
		_, errs0 := h.metric("lrpdns_node_cache_config_errors_total")
		writeConfigMap(t, h.opts.KubeDNSConfigDir, cm)
		if !eventually(5*time.Second, func() bool {
			_, errs := h.metric("lrpdns_node_cache_config_errors_total")
			return errs == errs0+1
		}) {
			t.Fatalf("case %d: self-pointing ConfigMap not refused within 5s; logs:\n%s", i, h.logs)
		}
		time.Sleep(time.Second) // the loop plugin would have fired by now
		if !strings.Contains(h.logs.String(), self) || !strings.Contains(h.logs.String(), "this cache itself") {
			t.Errorf("case %d: log does not name the value and the loop:\n%s", i, h.logs)
		}
		h.mustAnswer(fmt.Sprintf("still-%d.example.com", i), "192.0.2.1")
		h.mustAnswer(fmt.Sprintf("still-%d.default.svc.cluster.local", i), "10.96.0.99")
	}
}

// TestUpstreamFoundThroughClusterDNS: a cache pod that started before
// kube-dns-upstream existed has no service-link variables for it. It asks
// the cluster DNS Service for the name until the Service exists, then
// forwards cluster names to it over TCP.
func TestUpstreamFoundThroughClusterDNS(t *testing.T) {
	upstream := startDNS(t, "10.96.0.99", 30)
	// kube-dns: the name does not exist for the first three queries (A and
	// AAAA of one attempt, then A of the next), then is 127.0.0.1.
	kubeDNS := dnstest.StartTB(t, dnstest.Options{Host: "127.0.0.2", Answer: netip.MustParseAddr("127.0.0.1"), TTL: 30, NXDomainFirst: 3})
	env := map[string]string{
		"KUBE_DNS_SERVICE_HOST":     "127.0.0.2",
		"KUBE_DNS_SERVICE_PORT_DNS": strconv.Itoa(int(kubeDNS.Addr.Port())),
	}
	h := newHarness(t, func(h *harness) {
		h.opts.ClusterDNS = nil
		h.opts.Namespace = "lrpdns-test"
		h.opts.Getenv = func(k string) string { return env[k] }
		h.opts.upstreamPort = upstream.Addr.Port()
		if err := h.opts.DiscoverClusterDNS(t.Context(), slog.New(slog.NewTextHandler(h.logs, nil))); err != nil {
			t.Fatal(err)
		}
	})
	if q := kubeDNS.QueriesFor("kube-dns-upstream.lrpdns-test.svc.cluster.local"); len(q) < 4 {
		t.Errorf("kube-dns saw %d queries for the upstream Service, want at least 4 (retried past NXDOMAIN)", len(q))
	}
	if want := []string{upstream.Addr.String()}; !slices.Equal(h.opts.ClusterDNS, want) {
		t.Errorf("cluster DNS = %v, want %v", h.opts.ClusterDNS, want)
	}
	h.mustAnswer("found.default.svc.cluster.local", "10.96.0.99")
	wantOnly(t, upstream, "found.default.svc.cluster.local", "tcp", 1)
}

// TestNoUpstreamAndNoClusterDNSSaysWhatIsMissing: without the upstream's
// variables and without kube-dns's, there is nothing to ask.
func TestNoUpstreamAndNoClusterDNSSaysWhatIsMissing(t *testing.T) {
	o := DefaultOptions()
	o.Getenv = func(string) string { return "" }
	err := o.DiscoverClusterDNS(t.Context(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "KUBE_DNS_UPSTREAM_SERVICE_HOST is unset") {
		t.Errorf("error = %v, want it to name KUBE_DNS_UPSTREAM_SERVICE_HOST", err)
	}
}

// TestOversizedConfigMapIsRefusedAndClipped: 1,000 stub domains and a 10 MB
// value are refused while the cache keeps serving; the log names the limit
// and stays short (the value is clipped, not logged whole).
func TestOversizedConfigMapIsRefusedAndClipped(t *testing.T) {
	h := newHarness(t, func(h *harness) { h.opts.CheckInterval = 100 * time.Millisecond })
	var stubs []string
	for i := range 1000 {
		stubs = append(stubs, fmt.Sprintf(`"s%d.example": ["10.0.0.1"]`, i))
	}
	huge := `{"` + strings.Repeat("a", 10<<20) + `": ["10.0.0.1"]}`
	for i, c := range []struct{ value, want string }{
		{"{" + strings.Join(stubs, ",") + "}", "at most 32 stub domains (it has 1000)"},
		{huge, fmt.Sprintf("at most 65536 bytes (it has %d)", len(huge))},
	} {
		_, errs0 := h.metric("lrpdns_node_cache_config_errors_total")
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{"stubDomains": c.value})
		if !eventually(5*time.Second, func() bool {
			_, errs := h.metric("lrpdns_node_cache_config_errors_total")
			return errs == errs0+1
		}) {
			t.Fatalf("case %d: not refused within 5s", i)
		}
		logs := h.logs.String()
		if !strings.Contains(logs, c.want) {
			t.Errorf("case %d: log does not say %q", i, c.want)
		}
		for _, line := range strings.Split(logs, "\n") {
			if len(line) > 2048 {
				t.Errorf("case %d: a log line of %d bytes, want user input clipped", i, len(line))
			}
		}
		h.mustAnswer(fmt.Sprintf("still-%d.example.com", i), "192.0.2.1")
	}
}

// TestReplacedConfigMapDirectoryIsLive: the ConfigMap directory deleted and
// created again (a volume replaced) is still watched: the new content is
// served within a second, with the periodic check off.
func TestReplacedConfigMapDirectoryIsLive(t *testing.T) {
	var stub *dnstest.Server
	h := newHarness(t, func(h *harness) {
		stub = startDNS(t, "10.10.0.9", 30)
		// Not beside resolv.conf, whose directory is watched anyway.
		h.opts.KubeDNSConfigDir = filepath.Join(t.TempDir(), "volumes", "kube-dns")
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{"stubDomains": `{}`})
	})
	_, gen0 := h.metric("lrpdns_node_cache_config_generation")
	if err := os.RemoveAll(h.opts.KubeDNSConfigDir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{"stubDomains": fmt.Sprintf(`{"acme.local": [%q]}`, stub.Addr)})
	if !eventually(time.Second, func() bool {
		_, gen := h.metric("lrpdns_node_cache_config_generation")
		return gen > gen0
	}) {
		t.Fatalf("the re-created directory's content was not applied within 1s; logs:\n%s", h.logs)
	}
	t.Logf("applied %v after the directory was created again", time.Since(start).Round(time.Millisecond))
	h.mustAnswer("db.acme.local", "10.10.0.9")
}

// TestZonesFileIsLiveAndKeepsLastGood: a zone added to the zones file (a
// ConfigMap volume) is served on the file event alone, over the protocol it
// names; a broken file is refused, naming the field, and the zone keeps
// being served.
func TestZonesFileIsLiveAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, func(h *harness) { h.opts.ZonesFile = filepath.Join(dir, "zones.yaml") })
	_, gen0 := h.metric("lrpdns_node_cache_config_generation")
	h.mustAnswer("before.corp.example", "192.0.2.1") // no zone yet: the node's resolver

	corp := startDNS(t, "10.160.0.10", 30)
	writeConfigMap(t, dir, map[string]string{"zones.yaml": fmt.Sprintf("zones:\n- zone: corp.example\n  servers: [%q]\n  protocol: tcp\n", corp.Addr)})
	i := 0
	if !eventually(5*time.Second, func() bool {
		i++
		r, err := h.query("udp", fmt.Sprintf("n%d.corp.example", i))
		return err == nil && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "10.160.0.10"
	}) {
		t.Fatalf("zone not served 5s after the zones file changed; logs:\n%s", h.logs)
	}
	h.wantGeneration(gen0 + 1)
	wantOnly(t, corp, fmt.Sprintf("n%d.corp.example", i), "tcp", 1)

	writeConfigMap(t, dir, map[string]string{"zones.yaml": "zones:\n- zone: corp.example\n  servers: [10.160.0.10]\n  protocol: quic\n"})
	if !eventually(5*time.Second, func() bool {
		_, ok := h.metric("lrpdns_node_cache_config_last_reload_successful")
		return ok == 0
	}) {
		t.Fatalf("broken zones file not noticed within 5s; logs:\n%s", h.logs)
	}
	if logs := h.logs.String(); !strings.Contains(logs, `zone \"corp.example\" forward protocol \"quic\"`) {
		t.Errorf("log does not name the field and value:\n%s", logs)
	}
	h.mustAnswer("still.corp.example", "10.160.0.10")
	wantOnly(t, corp, "still.corp.example", "tcp", 1)
}
