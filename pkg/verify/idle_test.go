package verify

import (
	"context"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// endpoint is a pod of the kube-system namespace with one k8s-app label,
// or, with app "", a destination outside the cluster.
func endpoint(app string, id uint32) *flowpb.Endpoint {
	if app == "" {
		return &flowpb.Endpoint{Identity: 2, Labels: []string{"reserved:world"}}
	}
	return &flowpb.Endpoint{Identity: id, Namespace: "kube-system", PodName: app + "-x",
		Labels: []string{"k8s:io.kubernetes.pod.namespace=kube-system", "k8s:k8s-app=" + app}}
}

// udpQuery is a delivered query on node from src to dst:port.
func udpQuery(node string, src, dst *flowpb.Endpoint, srcIP, dstIP string, port uint32, tcp bool) *observerpb.GetFlowsResponse {
	l4 := &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: 40000, DestinationPort: port}}}
	if tcp {
		l4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: 40000, DestinationPort: port}}}
	}
	return &observerpb.GetFlowsResponse{NodeName: node, ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: &flowpb.Flow{
		Time: timestamppb.New(time.Date(2026, 12, 7, 17, 32, 9, 0, time.UTC)), NodeName: node, Verdict: flowpb.Verdict_FORWARDED,
		IP: &flowpb.IP{Source: srcIP, Destination: dstIP, IpVersion: flowpb.IPVersion_IPv4}, L4: l4,
		Source: src, Destination: dst, IsReply: wrapperspb.Bool(false),
		EventType: &flowpb.CiliumEventType{Type: 4}, TraceObservationPoint: flowpb.TraceObservationPoint_TO_STACK,
	}}}
}

// TestIdleNode: a node without client DNS traffic (kind's control plane:
// CoreDNS there forwards to the node's resolver, its cache forwards a
// cluster name over TCP) proves nothing and fails nothing; a bypass there
// still fails it. Seen in the kind run: CoreDNS's forwards counted as a
// client that never reached a cache, and the idle cache's missing external
// name failed the node.
func TestIdleNode(t *testing.T) {
	t.Parallel()
	coredns, cache, relay := endpoint("kube-dns", 43457), endpoint("node-local-dns", 16105), endpoint("hubble-relay", 44945)
	idle := []*observerpb.GetFlowsResponse{
		udpQuery("control-plane", coredns, endpoint("", 0), "10.244.0.123", "172.18.0.1", 53, false),
		udpQuery("control-plane", cache, coredns, "10.244.0.77", "10.244.0.123", 53, true),
	}
	rep, err := Evaluate(context.Background(), DefaultConfig(), idle)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].Status != NoData {
		t.Fatalf("idle node: %+v, want NO DATA", rep.Nodes)
	}
	bypass := append(idle, udpQuery("control-plane", relay, coredns, "10.244.1.226", "10.244.0.123", 53, false))
	rep, err = Evaluate(context.Background(), DefaultConfig(), bypass)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Nodes[0].Status != Fail {
		t.Errorf("a client querying CoreDNS directly on an idle node: %s, want FAIL", rep.Nodes[0].Status)
	}
}
