package noderesolver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestReply(t *testing.T) {
	t.Parallel()
	c := Config{Zone: "example.com", Answer: netip.MustParseAddr("198.51.100.53"), Refuse: "cluster.local"}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		a     string
	}{
		{"example.com.", dns.TypeA, dns.RcodeSuccess, "198.51.100.53"},
		{"r7-12.example.com.", dns.TypeA, dns.RcodeSuccess, "198.51.100.53"},
		{"10-7-0-12.example.com.", dns.TypeA, dns.RcodeSuccess, "10.7.0.12"},
		{"10-7-0-12.EXAMPLE.com.", dns.TypeA, dns.RcodeSuccess, "10.7.0.12"},
		{"10-7-0.example.com.", dns.TypeA, dns.RcodeSuccess, "198.51.100.53"},
		{"10-7-0-12.example.com.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"kubernetes.default.svc.cluster.local.", dns.TypeA, dns.RcodeRefused, ""},
		{"1.0.0.10.in-addr.arpa.", dns.TypePTR, dns.RcodeRefused, ""},
		{"host.docker.internal.", dns.TypeA, dns.RcodeNameError, ""},
	} {
		q := new(dns.Msg)
		q.SetQuestion(tc.name, tc.qtype)
		r := c.Reply(q)
		a := ""
		if len(r.Answer) == 1 {
			a = r.Answer[0].(*dns.A).A.String()
		}
		if r.Rcode != tc.rcode || a != tc.a || len(r.Answer) > 1 {
			t.Errorf("%s %s: rcode %s answer %q (%d records), want %s %q", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], a, len(r.Answer), dns.RcodeToString[tc.rcode], tc.a)
		}
	}
}

// TestServe asks the server over real UDP and TCP sockets.
func TestServe(t *testing.T) {
	t.Parallel()
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, addr, Config{Zone: "example.com", Answer: netip.MustParseAddr("198.51.100.53"), Refuse: "cluster.local"})
	}()
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: time.Second}
		q := new(dns.Msg)
		q.SetQuestion("10-1-2-3.example.com.", dns.TypeA)
		var r *dns.Msg
		for i := 0; i < 50; i++ { // until the server listens
			if r, _, err = c.Exchange(q, addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.1.2.3" {
			t.Errorf("%s: %v, %v", netw, r, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
