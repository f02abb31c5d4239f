package judge

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// proxyTimeoutLine is an agent's log line for a query its DNS proxy
// forwarded and never got an answer for (Cilium's slog text format).
var proxyTimeoutLine = regexp.MustCompile(`(?m)^time=(\S+) .*Timeout waiting for response to forwarded proxied DNS lookup.* dnsName=(\S+)`)

// ParseProxyTimeouts reads the unanswered forwards in one node's agent log.
// Lines without a readable time are left out: they cannot be placed.
func ParseProxyTimeouts(node, log string) []ProxyTimeout {
	var out []ProxyTimeout
	for _, m := range proxyTimeoutLine.FindAllStringSubmatch(log, -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		out = append(out, ProxyTimeout{Node: node, Name: m[2], At: at})
	}
	return out
}

// NoBackendReasons are Cilium's datapath metric reasons for a service
// lookup that found no backend: socket load balancing at connect(), and
// per-packet load balancing.
var NoBackendReasons = []string{
	"LB, sock cgroup: No backend slot entry found",
	"LB, sock cgroup: No backend entry found",
	"Service backend not found",
}

// NoBackendCount sums the packets of NoBackendReasons in `cilium-dbg bpf
// metrics list -o json`.
func NoBackendCount(metricsJSON []byte) (int, error) {
	var rows []struct {
		Reason  string `json:"reason"`
		Packets int    `json:"packets"`
	}
	if err := json.Unmarshal(metricsJSON, &rows); err != nil {
		return 0, fmt.Errorf("failed to parse cilium-dbg bpf metrics list: %w", err)
	}
	n := 0
	for _, r := range rows {
		for _, want := range NoBackendReasons {
			if r.Reason == want {
				n += r.Packets
			}
		}
	}
	return n, nil
}
