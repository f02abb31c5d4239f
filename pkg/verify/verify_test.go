package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func load(t *testing.T, name string) []*observerpb.GetFlowsResponse {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flows, err := ReadFlows(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) < 10 {
		t.Fatalf("%s: %d flows, want a real recording", name, len(flows))
	}
	return flows
}

func labConfig() Config {
	c := DefaultConfig()
	c.NodeResolvers = []netip.Addr{netip.MustParseAddr("10.99.0.1")}
	return c
}

// statuses evaluates a one-node recording and returns each check's status.
func statuses(t *testing.T, c Config, flows []*observerpb.GetFlowsResponse) map[string]Status {
	t.Helper()
	rep, err := Evaluate(context.Background(), c, flows)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Nodes) != 1 {
		t.Fatalf("%d nodes in a one-node recording", len(rep.Nodes))
	}
	out := map[string]Status{}
	for _, r := range rep.Nodes[0].Checks {
		out[r.Name] = r.Status
		if (r.Status == Pass && r.Matched > 0 || r.Status == Fail) && r.Evidence == nil {
			t.Errorf("%s: %s without an evidence flow", r.Name, r.Status)
		}
	}
	return out
}

func all(s Status) map[string]Status {
	return map[string]Status{
		"clients-to-cache": s, "cache-to-coredns-tcp": s, "cache-to-node-resolvers": s, "no-bypass": s, "no-drops": s,
		"cluster-names-not-to-node-resolvers": s, "external-names-not-to-coredns": s,
	}
}

// TestRecordedFlows runs every check on the real recordings (testdata/README.md).
func TestRecordedFlows(t *testing.T) {
	t.Parallel()
	with := func(m map[string]Status, kv ...any) map[string]Status {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(Status)
		}
		return m
	}
	tests := []struct {
		file   string
		config Config
		want   map[string]Status
		pass   bool
	}{
		{"healthy.jsonpb", labConfig(), all(Pass), true},
		{"healthy.jsonpb", DefaultConfig(), all(Pass), true}, // resolvers as "not a pod"
		{"bypass.jsonpb", labConfig(), with(all(Pass),
			"clients-to-cache", Fail, "no-bypass", Fail, "cache-to-node-resolvers", Fail,
			"cluster-names-not-to-node-resolvers", NoData, "external-names-not-to-coredns", NoData), false},
		{"external-to-coredns.jsonpb", labConfig(), with(all(Pass),
			"cache-to-node-resolvers", Fail, "external-names-not-to-coredns", Fail), false},
		{"cluster-to-node-resolver.jsonpb", labConfig(), with(all(Pass),
			"cache-to-coredns-tcp", Fail, "cluster-names-not-to-node-resolvers", Fail), false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			flows := load(t, tt.file)
			if diff := cmp.Diff(tt.want, statuses(t, tt.config, flows)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			rep, _ := Evaluate(context.Background(), tt.config, flows)
			if rep.Passed() != tt.pass {
				t.Errorf("Passed = %v, want %v", rep.Passed(), tt.pass)
			}
		})
	}
}

// TestCacheWithoutTCPFails derives a cache that never uses TCP from the
// healthy recording by dropping its TCP flows: those with the cache's
// identity, which includes connections the DNS proxy re-originated for it
// from another address.
func TestCacheWithoutTCPFails(t *testing.T) {
	t.Parallel()
	var udpOnly []*observerpb.GetFlowsResponse
	for _, f := range load(t, "healthy.jsonpb") {
		if slices.Contains(f.GetFlow().GetSource().GetLabels(), "k8s:k8s-app=node-local-dns") && f.GetFlow().GetL4().GetTCP() != nil {
			continue
		}
		udpOnly = append(udpOnly, f)
	}
	if got := statuses(t, labConfig(), udpOnly)["cache-to-coredns-tcp"]; got != Fail {
		t.Errorf("cache-to-coredns-tcp = %s, want FAIL when the cache never reaches CoreDNS over TCP", got)
	}
}

func TestNoFlowsIsNoData(t *testing.T) {
	t.Parallel()
	rep, err := Evaluate(context.Background(), DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Nodes) != 0 || rep.Passed() {
		t.Errorf("no flows: %+v, passed %v; want no node and not passed", rep.Nodes, rep.Passed())
	}
}

// TestBareFlowShape feeds the same recording as bare Flow objects, one per
// line, the other shape Hubble tools print.
func TestBareFlowShape(t *testing.T) {
	t.Parallel()
	var bare bytes.Buffer
	for _, f := range load(t, "healthy.jsonpb") {
		b, err := protojson.Marshal(f.GetFlow())
		if err != nil {
			t.Fatal(err)
		}
		bare.Write(b)
		bare.WriteString("\n\n")
	}
	flows, err := ReadFlows(&bare)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all(Pass), statuses(t, labConfig(), flows)); diff != "" {
		t.Errorf("bare flows (-want +got):\n%s", diff)
	}
}

func TestReadFlowsRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"not json\n", `{"flow": {"verdict": 12345678901234567890}}` + "\n"} {
		if _, err := ReadFlows(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ReadFlows(%q) error = %v, want one naming line 1", in, err)
		}
	}
	flows, err := ReadFlows(strings.NewReader(`{"node_status": {"state_change": "NODE_CONNECTED"}}` + "\n"))
	if err != nil || len(flows) != 0 {
		t.Errorf("node status line: %d flows, %v; want skipped", len(flows), err)
	}
}

// A record with a hole in it fails closed: the flows come back with an
// *Incomplete quoting Relay, so a node whose failures went unrecorded
// cannot pass.
func TestIncompleteRecord(t *testing.T) {
	t.Parallel()
	healthy, err := os.ReadFile("testdata/healthy.jsonpb")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want string // "": complete
	}{
		{`{"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["kind-worker"]}}`, ""},
		{`{"node_status": {"state_change": "NODE_GONE", "node_names": ["kind-worker"]}}`, ""},
		{`{"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["kind-worker2"], "message": "connection refused"}}`,
			"Hubble Relay: NODE_UNAVAILABLE for kind-worker2: connection refused"},
		{`{"node_status": {"state_change": "NODE_ERROR", "node_names": ["a", "b"]}}`, "Hubble Relay: NODE_ERROR for a, b"},
		{`{"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "7", "cpu": 1}, "node_name": "kind-worker"}`,
			"7 events lost at PERF_EVENT_RING_BUFFER on kind-worker (CPU 1)"},
		{`{"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "1"}}`, "1 events lost at HUBBLE_RING_BUFFER"},
	} {
		flows, err := ReadFlows(strings.NewReader(string(healthy) + tc.line + "\n"))
		if len(flows) < 10 {
			t.Errorf("%s: %d flows, want the recording's", tc.line, len(flows))
		}
		var inc *Incomplete
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want a complete record", tc.line, err)
		case tc.want != "" && (!errors.As(err, &inc) || len(inc.Problems) != 1 || inc.Problems[0] != tc.want):
			t.Errorf("%s: error %v, want *Incomplete %q", tc.line, err, tc.want)
		}
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	flows := load(t, "healthy.jsonpb")
	if got := Window(flows, 0); len(got) != len(flows) {
		t.Errorf("Window(0) kept %d of %d", len(got), len(flows))
	}
	got := Window(flows, time.Second)
	if len(got) == 0 || len(got) >= len(flows) {
		t.Errorf("Window(1s) kept %d of %d flows spanning several seconds", len(got), len(flows))
	}
}

func TestReports(t *testing.T) {
	t.Parallel()
	rep, err := Evaluate(context.Background(), labConfig(), load(t, "bypass.jsonpb"))
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{
		"node cil-node: FAIL",
		"  FAIL     no client reaches CoreDNS pods directly on port 53",
		"10.244.0.55:", "-> 10.244.0.188:53", "FORWARDED (UDP)", // the evidence, as hubble observe prints it
		"FAIL: the node-local DNS path is not proven (passed: none; failed: cil-node; no client DNS traffic: none)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	checks := len(rep.Nodes[0].Checks)
	if n := strings.Count(out, "\n"); n < checks+2 {
		t.Errorf("text report has %d lines for %d checks", n, checks)
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Pass  bool
		Nodes []struct {
			Node, Status string
			Checks       []struct {
				Name, Status string
				Evidence     map[string]any
			}
		}
	}
	if err := json.Unmarshal(js.Bytes(), &parsed); err != nil {
		t.Fatal(err)
	}
	if parsed.Pass || len(parsed.Nodes) != 1 || parsed.Nodes[0].Node != "cil-node" || parsed.Nodes[0].Status != "FAIL" || len(parsed.Nodes[0].Checks) != checks {
		t.Errorf("JSON report %+v, want pass=false, node cil-node FAIL with %d checks", parsed, checks)
	}
	for _, c := range parsed.Nodes[0].Checks {
		if c.Name == "no-bypass" && (c.Status != "FAIL" || c.Evidence["flow"] == nil) {
			t.Errorf("no-bypass in JSON = %+v, want FAIL with the evidence flow", c)
		}
	}
}

// asIPv6 is flows with every client query (a request not from a cache pod)
// moved to IPv6, as a dual-stack client's would be.
func asIPv6(flows []*observerpb.GetFlowsResponse) []*observerpb.GetFlowsResponse {
	out := make([]*observerpb.GetFlowsResponse, 0, len(flows))
	for _, f := range flows {
		f = proto.Clone(f).(*observerpb.GetFlowsResponse)
		fl := f.GetFlow()
		if ip := fl.GetIP(); ip != nil && !fl.GetIsReply().GetValue() && !slices.Contains(fl.GetSource().GetLabels(), "k8s:k8s-app=node-local-dns") {
			ip.IpVersion = flowpb.IPVersion_IPv6
			ip.Source, ip.Destination = "fd00:10:244::"+strings.ReplaceAll(ip.Source, ".", ""), "fd00:10:96::"+strings.ReplaceAll(ip.Destination, ".", "")
		}
		out = append(out, f)
	}
	return out
}

// TestClientIPVersion: with ClientIPVersion set, IPv4 clients' queries
// cannot pass the client checks for IPv6 ones, IPv6 clients' queries do,
// and an IPv6 client bypassing the cache still fails.
func TestClientIPVersion(t *testing.T) {
	t.Parallel()
	v6 := labConfig()
	v6.ClientIPVersion = flowpb.IPVersion_IPv6
	healthy := load(t, "healthy.jsonpb")
	if got := statuses(t, v6, healthy)["clients-to-cache"]; got == Pass {
		t.Errorf("IPv4 clients only: clients-to-cache over IPv6 = %s, want not PASS", got)
	}
	got := statuses(t, v6, asIPv6(healthy))
	for _, name := range []string{"clients-to-cache", "no-bypass", "cache-to-coredns-tcp", "cache-to-node-resolvers"} {
		if got[name] != Pass {
			t.Errorf("IPv6 clients: %s = %s, want PASS", name, got[name])
		}
	}
	if got := statuses(t, v6, asIPv6(load(t, "bypass.jsonpb")))["no-bypass"]; got != Fail {
		t.Errorf("an IPv6 client bypassing the cache: no-bypass = %s, want FAIL", got)
	}
	if got := statuses(t, labConfig(), asIPv6(healthy))["clients-to-cache"]; got != Pass {
		t.Errorf("no ClientIPVersion: clients-to-cache = %s on IPv6 clients, want PASS (both versions judged)", got)
	}
}
