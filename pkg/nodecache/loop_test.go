package nodecache

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// relay is a DNS server that forwards every query to the cache: a stub
// server that sends its queries back to the cluster DNS, which the redirect
// points at the cache. Its address is not the cache's, so only a probe can
// find the loop.
type relay struct {
	addr    string
	relayed atomic.Int64
}

func startRelay(t *testing.T, to string) *relay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r.relayed.Add(1)
		resp, err := dns.Exchange(q, to)
		if err != nil {
			return
		}
		_ = w.WriteMsg(resp)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return r
}

// TestIndirectLoopOnReloadGoesBackToLastGood: a ConfigMap whose stub server
// relays to the cache passes every static check; the guard's probe finds
// the loop, and the cache goes back to the configuration before it instead
// of exiting (CoreDNS's loop plugin calls log.Fatal, which would end this
// test binary). The looping ConfigMap stays refused on later checks, and
// every name is still answered.
func TestIndirectLoopOnReloadGoesBackToLastGood(t *testing.T) {
	port := dnstest.FreePort(t)
	h := newHarness(t, func(h *harness) {
		h.opts.Port = port
		h.opts.CheckInterval = 100 * time.Millisecond
	})
	good := h.metricLine("lrpdns_node_cache_config_info")
	r := startRelay(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	_, errs0 := h.metric("lrpdns_node_cache_config_errors_total")
	_, gen0 := h.metric("lrpdns_node_cache_config_generation")
	writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
		"stubDomains": fmt.Sprintf(`{"relay.local": [%q]}`, r.addr),
	})
	if !eventually(10*time.Second, func() bool {
		_, errs := h.metric("lrpdns_node_cache_config_errors_total")
		return errs == errs0+1
	}) {
		t.Fatalf("looping stub domain not refused within 10s; logs:\n%s", h.logs)
	}
	if !eventually(2*time.Second, func() bool { return h.metricLine("lrpdns_node_cache_config_info") == good }) {
		t.Errorf("config_info = %s, want the configuration before the loop, %s", h.metricLine("lrpdns_node_cache_config_info"), good)
	}
	if _, ok := h.metric("lrpdns_node_cache_config_last_reload_successful"); ok != 0 {
		t.Errorf("config_last_reload_successful = %v, want 0", ok)
	}
	if !strings.Contains(h.logs.String(), `forwarding loop for zone \"relay.local.\"`) {
		t.Errorf("log does not name the zone and the loop:\n%s", h.logs)
	}
	// Later checks see the same inputs: still refused, counted once, no flapping.
	time.Sleep(time.Second)
	if _, errs := h.metric("lrpdns_node_cache_config_errors_total"); errs != errs0+1 {
		t.Errorf("config_errors_total = %v after more checks, want %v (refused once)", errs, errs0+1)
	}
	if _, gen := h.metric("lrpdns_node_cache_config_generation"); gen != gen0+2 {
		t.Errorf("config_generation = %v, want %v (the looping one, then back)", gen, gen0+2)
	}
	relayed := r.relayed.Load()
	h.mustAnswer("app.relay.local", "192.0.2.1") // no stub now: the node's resolver
	h.mustAnswer("still.default.svc.cluster.local", "10.96.0.99")
	if n := r.relayed.Load(); n != relayed {
		t.Errorf("the relay got %d more queries after the loop was refused", n-relayed)
	}
}

// TestIndirectLoopAtStartKeepsServing: with the loop there from the start
// there is nothing to go back to; the looping zone answers SERVFAIL at once
// (no query goes round) and every other name is served.
func TestIndirectLoopAtStartKeepsServing(t *testing.T) {
	port := dnstest.FreePort(t)
	var r *relay
	h := newHarness(t, func(h *harness) {
		h.opts.Port = port
		r = startRelay(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
			"stubDomains": fmt.Sprintf(`{"relay.local": [%q]}`, r.addr),
		})
	})
	if !eventually(10*time.Second, func() bool {
		_, errs := h.metric("lrpdns_node_cache_config_errors_total")
		return errs >= 1 && strings.Contains(h.logs.String(), "forwarding loop")
	}) {
		t.Fatalf("loop at start not reported within 10s; logs:\n%s", h.logs)
	}
	relayed := r.relayed.Load()
	resp, err := h.query("udp", "app.relay.local")
	if err != nil {
		t.Fatalf("query in the looping zone: %v", err)
	}
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("looping zone rcode = %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	if n := r.relayed.Load(); n != relayed {
		t.Errorf("the relay got %d queries after the loop was found; want none", n-relayed)
	}
	h.mustAnswer("fine.example.com", "192.0.2.1")
	h.mustAnswer("fine.default.svc.cluster.local", "10.96.0.99")
}
