package nodecache

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestTCPConnectionsAreCapped: with --max-tcp-connections=5, five clients
// hold a connection each; the sixth is closed at once (counted), UDP is
// still answered, and once a holder leaves a new connection is served.
func TestTCPConnectionsAreCapped(t *testing.T) {
	h := newHarness(t, func(h *harness) { h.opts.MaxTCPConns = 5 })
	ask := func(c *dns.Conn, name string) error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			return err
		}
		r, err := c.ReadMsg()
		if err == nil && r.Rcode != dns.RcodeSuccess {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
		}
		return err
	}
	dial := func() (*dns.Conn, error) {
		c, err := net.Dial("tcp", h.dns["tcp"])
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		return &dns.Conn{Conn: c}, nil
	}
	// dialAsk dials and asks; a connection reset while dialling (the cache
	// closes an over-cap connection with a reset) is a refusal too.
	dialAsk := func(name string) error {
		c, err := dial()
		if err != nil {
			return err
		}
		return ask(c, name)
	}
	var held []*dns.Conn
	for i := range 5 {
		c, err := dial()
		if err != nil {
			t.Fatalf("connection %d of 5: %v", i+1, err)
		}
		if err := ask(c, "held.example.com"); err != nil {
			t.Fatalf("connection %d of 5: %v", i+1, err)
		}
		held = append(held, c)
	}
	if _, n := h.metric("lrpdns_node_cache_tcp_connections "); n != 5 {
		t.Errorf("tcp_connections = %v, want 5", n)
	}
	if err := dialAsk("sixth.example.com"); err == nil {
		t.Fatal("a sixth TCP connection was served with 5 open and --max-tcp-connections=5")
	} else {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("the sixth connection hung (%v); want it closed at once", err)
		}
	}
	if _, n := h.metric("lrpdns_node_cache_tcp_connections_refused_total"); n < 1 {
		t.Errorf("tcp_connections_refused_total = %v, want at least 1", n)
	}
	h.mustAnswer("udp-still.example.com", "192.0.2.1")
	held[0].Close()
	if !eventually(2*time.Second, func() bool { return dialAsk("after.example.com") == nil }) {
		t.Error("no TCP connection served after one of the five closed")
	}
}

// TestReloadsLoseNoQuery: the public sockets stay open across reloads and
// the front moves to each new CoreDNS server before the old one stops, so
// clients asking all the while (UDP and TCP, hits and misses) see no error.
func TestReloadsLoseNoQuery(t *testing.T) {
	h := newHarness(t, nil)
	stub := startDNS(t, "192.0.2.7", 30)
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for w := range 4 {
		network := []string{"udp", "tcp"}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := "hit.example.com"
				if i%2 == 1 {
					name = "miss-" + strconv.Itoa(w) + "-" + strconv.Itoa(i) + ".example.com" // forwarded
				}
				sent.Add(1)
				r, err := h.query(network, name)
				if err == nil && r.Rcode != dns.RcodeSuccess {
					err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s %s: %v", network, name, err))
					mu.Unlock()
				}
			}
		}()
	}
	_, gen0 := h.metric("lrpdns_node_cache_config_generation")
	const reloads = 10
	for i := range reloads {
		writeConfigMap(t, h.opts.KubeDNSConfigDir, map[string]string{
			"stubDomains": fmt.Sprintf(`{"stub%d.local": [%q]}`, i, stub.Addr.String()),
		})
		want := gen0 + float64(i+1)
		if !eventually(5*time.Second, func() bool { _, g := h.metric("lrpdns_node_cache_config_generation"); return g >= want }) {
			t.Fatalf("reload %d not applied within 5s; logs:\n%s", i+1, h.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d reloads: %d queries sent, %d failed", reloads, sent.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d queries failed across %d reloads: %v", failed.Load(), sent.Load(), reloads, failures)
	}
	if sent.Load() < 100 {
		t.Errorf("only %d queries sent during the reloads; the test proves nothing", sent.Load())
	}
}
