//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestFailuresInGap: only cluster-domain names, sent inside the window, all
// of them listed, pass as the upstream gap; make test runs it.
func TestFailuresInGap(t *testing.T) {
	from := time.Date(2026, 12, 5, 17, 32, 23, 200_000_000, time.UTC)
	to := from.Add(4 * time.Second)
	for _, f := range []string{
		"Dec  5 17:32:24.372029 10-219-1-16.default.pod.cluster.local.: read udp 10.244.0.111:45910->10.96.0.10:53: i/o timeout", // lrpdns probe
		"2026-12-05T17:32:24.293Z 10-194-1-56.default.pod.cluster.local: ESERVFAIL",                                              // Node.js
		"17:32:24.293 10-1-1-1.default.pod.cluster.local: no answer",                                                             // getent
		"Dec  5 17:32:25.065448 kubernetes.default.svc.cluster.local.: read tcp 10.244.0.125:54380->10.96.0.10:53: i/o timeout",  // TTL ran out
	} {
		if not := failuresInGap(probeResult{Failed: 1, Failures: []string{f}}, from, to); not != "" {
			t.Errorf("refused: %s: %s", f, not)
		}
	}
	for _, f := range []string{
		"Dec  5 17:32:29.372029 10-219-1-16.default.pod.cluster.local.: i/o timeout", // after the window
		"Dec  5 17:32:22.372029 10-219-1-16.default.pod.cluster.local.: i/o timeout", // before it
		"Dec  5 17:32:24.372029 www.example.com.: i/o timeout",                       // external
		"10-219-1-16.default.pod.cluster.local.: i/o timeout",                        // no time
	} {
		if failuresInGap(probeResult{Failed: 1, Failures: []string{f}}, from, to) == "" {
			t.Errorf("accepted: %s", f)
		}
	}
	in := "Dec  5 17:32:24.372029 1-1-1-1.default.pod.cluster.local.: i/o timeout"
	if failuresInGap(probeResult{Failed: 11, Failures: []string{in}}, from, to) == "" {
		t.Error("accepted 11 failures with one listed")
	}
	if failuresInGap(probeResult{Failed: 1, Wrong: 1, Failures: []string{in}}, from, to) == "" {
		t.Error("accepted a wrong answer")
	}
}

// TestDNSErrors: the digest names each error answer's rcode, query, path
// and first time, counts repeats, and leaves out requests and NOERROR.
func TestDNSErrors(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 49, 6, 527_000_000, time.UTC)
	flow := func(typ flowpb.L7FlowType, rcode uint32, query string) *observerpb.GetFlowsResponse {
		return &observerpb.GetFlowsResponse{ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: &flowpb.Flow{
			Time: timestamppb.New(at),
			IP:   &flowpb.IP{Source: "10.244.0.124", Destination: "10.244.0.33"},
			L7: &flowpb.Layer7{Type: typ, Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
				Query: query, Rcode: rcode, ObservationSource: "proxy",
			}}},
		}}}
	}
	if got := dnsErrors([]*observerpb.GetFlowsResponse{
		flow(flowpb.L7FlowType_REQUEST, 0, "a.cluster.local."),
		flow(flowpb.L7FlowType_RESPONSE, 0, "a.cluster.local."),
	}); got != "" {
		t.Errorf("no error answers: got %q, want \"\"", got)
	}
	refused := flow(flowpb.L7FlowType_RESPONSE, 5, "kube-dns.kube-system.svc.cluster.local.")
	got := dnsErrors([]*observerpb.GetFlowsResponse{refused, flow(flowpb.L7FlowType_REQUEST, 5, "x."), refused})
	want := "DNS error answers in Hubble's flows: 2 REFUSED for kube-dns.kube-system.svc.cluster.local. 10.244.0.124 -> 10.244.0.33 (proxy) from 01:49:06.527"
	if got != want {
		t.Errorf("dnsErrors() = %q, want %q", got, want)
	}
}

// TestRefusedInSwitch: only a few refusals, all listed and within 100 ms,
// pass as per-packet load balancing's moment without a backend; make test
// runs it.
func TestRefusedInSwitch(t *testing.T) {
	lab := []string{ // as the lab's per-packet runs saw them
		"Dec  6 00:46:21.351060 10-122-1-46.default.pod.cluster.local.: read udp 10.244.0.78:46612->10.96.0.10:53: read: connection refused",
		"2026-12-06T02:54:52.493Z kube-dns.kube-system.svc.cluster.local: ECONNREFUSED",
	}
	for _, f := range lab {
		if not := refusedInSwitch(probeResult{Failed: 1, Failures: []string{f}}); not != "" {
			t.Errorf("refused: %s: %s", f, not)
		}
	}
	two := []string{"2026-12-06T02:54:52.493Z a.cluster.local: ECONNREFUSED", "2026-12-06T02:54:52.560Z example.com: ECONNREFUSED"}
	if not := refusedInSwitch(probeResult{Failed: 2, Failures: two}); not != "" {
		t.Errorf("two refusals 67 ms apart: %s", not)
	}
	for name, r := range map[string]probeResult{
		"a timeout":      {Failed: 1, Failures: []string{"Dec  6 00:46:21.351060 a.cluster.local.: i/o timeout"}},
		"SERVFAIL":       {Failed: 1, Failures: []string{"Dec  6 00:46:21.351060 a.cluster.local.: SERVFAIL"}},
		"no time":        {Failed: 1, Failures: []string{"a.cluster.local.: connection refused"}},
		"apart":          {Failed: 2, Failures: []string{two[0], "2026-12-06T02:54:52.700Z example.com: ECONNREFUSED"}},
		"unlisted":       {Failed: 3, Failures: two},
		"six":            {Failed: 6, Failures: []string{two[0], two[0], two[0], two[0], two[0], two[0]}},
		"a wrong answer": {Failed: 1, Wrong: 1, Failures: []string{two[0]}},
	} {
		if refusedInSwitch(r) == "" {
			t.Errorf("accepted %s: %q", name, r.Failures)
		}
	}
}

// TestJoinFlows: the later read adds only what came after the first's
// last flow, so a flow in both reads is counted once.
func TestJoinFlows(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 37, 43, 0, time.UTC)
	flow := func(sec int) *observerpb.GetFlowsResponse {
		return &observerpb.GetFlowsResponse{ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: &flowpb.Flow{
			Time: timestamppb.New(at.Add(time.Duration(sec) * time.Second)),
		}}}
	}
	during := []*observerpb.GetFlowsResponse{flow(0), flow(2), flow(1)}
	after := []*observerpb.GetFlowsResponse{flow(1), flow(2), flow(3), flow(9)}
	var got []int
	for _, r := range joinFlows(during, after) {
		got = append(got, int(r.GetFlow().GetTime().AsTime().Sub(at)/time.Second))
	}
	if want := []int{0, 2, 1, 3, 9}; !slices.Equal(got, want) {
		t.Errorf("joinFlows() seconds %v, want %v", got, want)
	}
	if n := len(joinFlows(nil, after)); n != len(after) {
		t.Errorf("joinFlows(nil, after) has %d flows, want %d", n, len(after))
	}
}

// TestNextRun: 254 clients in a row get 254 different run numbers, each
// one a name's second label can carry (1 to 254).
func TestNextRun(t *testing.T) {
	seen := map[int]bool{}
	for range 254 {
		n := nextRun()
		if n < 1 || n > 254 || seen[n] {
			t.Fatalf("nextRun() = %d after %v", n, len(seen))
		}
		seen[n] = true
	}
}

// TestProxyUnanswered: a timeout passes as Cilium's DNS proxy's only when
// the agent logged that very name as never answered (the lines of the
// dual-stack lab run that found it); a timeout for another name, a refusal,
// a wrong answer or too many do not.
func TestProxyUnanswered(t *testing.T) {
	logs := `time=2026-12-06T06:52:35.965258708Z level=warn msg="Timeout waiting for response to forwarded proxied DNS lookup" module=agent.controlplane.fqdn.dns-proxy ipAddr=10.244.0.130:32814 DNSRequestID=54630 dnsName=r44-310.example.com. endpointID=3314 identity=25619 error="read udp 10.99.0.2:55863->10.99.0.1:53: i/o timeout"`
	lab := "Dec  6 06:52:25.963236 r44-310.example.com.: read udp 10.244.0.173:58553->10.96.0.10:53: i/o timeout"
	if why := proxyUnanswered(probeResult{Failed: 1, Failures: []string{lab}}, func() string { return logs }); why != "" {
		t.Errorf("the lab's failure: %s", why)
	}
	for _, r := range []probeResult{
		{Failed: 1, Failures: []string{strings.Replace(lab, "r44-310", "r44-311", 1)}},
		{Failed: 1, Failures: []string{strings.Replace(lab, "i/o timeout", "connection refused", 1)}},
		{Failed: 1, Wrong: 1, Failures: []string{lab}},
		{Failed: 2, Failures: []string{lab}},
		{Failed: 4, Failures: []string{lab, lab, lab, lab}},
	} {
		if proxyUnanswered(r, func() string { return logs }) == "" {
			t.Errorf("accepted %+v", r)
		}
	}
	refused := probeResult{Failed: 1, Failures: []string{strings.Replace(lab, "i/o timeout", "connection refused", 1)}}
	if proxyUnanswered(refused, func() string { t.Error("read the agent logs for a refusal"); return logs }) == "" {
		t.Error("accepted a refusal")
	}
	if proxyUnanswered(probeResult{Failed: 1, Failures: []string{lab}}, func() string { return "" }) == "" {
		t.Error("accepted a timeout with no agent log")
	}
	if got := failedName("06:52:25.963 R44-310.Example.com: getent exit 2"); got != "r44-310.example.com." {
		t.Errorf("failedName(glibc line) = %q", got)
	}
}
