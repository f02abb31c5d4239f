package judge

import (
	"slices"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

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
	if got := DNSErrors([]*observerpb.GetFlowsResponse{
		flow(flowpb.L7FlowType_REQUEST, 0, "a.cluster.local."),
		flow(flowpb.L7FlowType_RESPONSE, 0, "a.cluster.local."),
	}); got != "" {
		t.Errorf("no error answers: got %q, want \"\"", got)
	}
	refused := flow(flowpb.L7FlowType_RESPONSE, 5, "kube-dns.kube-system.svc.cluster.local.")
	got := DNSErrors([]*observerpb.GetFlowsResponse{refused, flow(flowpb.L7FlowType_REQUEST, 5, "x."), refused})
	want := "DNS error answers in Hubble's flows: 2 REFUSED for kube-dns.kube-system.svc.cluster.local. 10.244.0.124 -> 10.244.0.33 (proxy) from 01:49:06.527"
	if got != want {
		t.Errorf("DNSErrors() = %q, want %q", got, want)
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
	for _, r := range JoinFlows(during, after) {
		got = append(got, int(r.GetFlow().GetTime().AsTime().Sub(at)/time.Second))
	}
	if want := []int{0, 2, 1, 3, 9}; !slices.Equal(got, want) {
		t.Errorf("JoinFlows() seconds %v, want %v", got, want)
	}
	if n := len(JoinFlows(nil, after)); n != len(after) {
		t.Errorf("JoinFlows(nil, after) has %d flows, want %d", n, len(after))
	}
}
