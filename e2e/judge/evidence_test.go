package judge

import (
	"testing"
	"time"
)

func TestParseProxyTimeouts(t *testing.T) {
	t.Parallel()
	// A dual-stack lab run's line, and lines that are not one.
	log := `time=2026-12-06T06:52:35.965258708Z level=warn msg="Timeout waiting for response to forwarded proxied DNS lookup" module=agent.controlplane.fqdn.dns-proxy ipAddr=10.244.0.130:32814 DNSRequestID=54630 dnsName=r44-310.example.com. endpointID=3314 identity=25619 error="read udp 10.99.0.2:55863->10.99.0.1:53: i/o timeout"
time=2026-12-06T06:52:36.0Z level=info msg="Cannot forward proxied DNS lookup" dnsName=x.example.com.
garbage=1 msg="Timeout waiting for response to forwarded proxied DNS lookup" dnsName=y.example.com.`
	got := ParseProxyTimeouts("lrpdns-node", log)
	want := ProxyTimeout{Node: "lrpdns-node", Name: "r44-310.example.com.", At: time.Date(2026, 12, 6, 6, 52, 35, 965258708, time.UTC)}
	if len(got) != 1 || got[0] != want {
		t.Errorf("ParseProxyTimeouts = %+v, want [%+v]", got, want)
	}
	// The lab run's failed query, sent 10 s before: excused on that node,
	// not on another, not as another name.
	f := Failure{At: want.At.Add(-10 * time.Second), Name: "R44-310.example.com", Kind: KindTimeout}
	a := ProxyUnanswered{Wait: 12 * time.Second, Max: 3}
	if why := a.Covers(f, Client{Node: "lrpdns-node"}, Evidence{ProxyTimeouts: got}); why != "" {
		t.Errorf("the lab run's failure: %s", why)
	}
	if a.Covers(f, Client{Node: "lrpdns-node2"}, Evidence{ProxyTimeouts: got}) == "" {
		t.Error("excused by another node's agent")
	}
}

func TestNoBackendCount(t *testing.T) {
	t.Parallel()
	metrics := `[{"reason":"Success","direction":"egress","packets":136902},
{"reason":"LB, sock cgroup: No backend slot entry found","direction":"egress","packets":2},
{"reason":"Service backend not found","direction":"egress","packets":1},
{"reason":"Policy denied","direction":"egress","packets":15}]`
	if n, err := NoBackendCount([]byte(metrics)); err != nil || n != 3 {
		t.Errorf("NoBackendCount = %d, %v; want 3", n, err)
	}
	if _, err := NoBackendCount([]byte("REASON DIRECTION")); err == nil {
		t.Error("a table, not JSON: want an error")
	}
}
