package verify

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
)

// Variants derived in code from the real recordings (testdata/README.md):
// each turns what Cilium would record in a broken or unusual cluster into
// flows, and checks the verdict and the node it names.

const cacheLabel = "k8s:k8s-app=node-local-dns"

// derive returns a copy of flows with edit applied to each flow; edit
// returns false to leave a flow out.
func derive(flows []*observerpb.GetFlowsResponse, edit func(*flowpb.Flow) bool) []*observerpb.GetFlowsResponse {
	var out []*observerpb.GetFlowsResponse
	for _, resp := range flows {
		c := proto.Clone(resp).(*observerpb.GetFlowsResponse)
		if edit(c.GetFlow()) {
			c.NodeName = c.GetFlow().GetNodeName()
			out = append(out, c)
		}
	}
	return out
}

// drop turns f into what Cilium records for a dropped packet: a drop
// event, DROPPED with a reason, no observation point, and no is_reply.
func drop(f *flowpb.Flow, reason flowpb.DropReason) {
	f.Verdict = flowpb.Verdict_DROPPED
	f.DropReasonDesc = reason
	f.EventType = &flowpb.CiliumEventType{Type: 1, SubType: int32(reason)}
	f.TraceObservationPoint = flowpb.TraceObservationPoint_UNKNOWN_POINT
	f.IsReply = nil
}

func hasLabel(e *flowpb.Endpoint, l string) bool { return slices.Contains(e.GetLabels(), l) }

func isRequest(f *flowpb.Flow) bool { return f.GetIsReply() != nil && !f.GetIsReply().GetValue() }

func evaluateText(t *testing.T, c Config, flows []*observerpb.GetFlowsResponse) (Report, string) {
	t.Helper()
	rep, err := Evaluate(context.Background(), c, flows)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	return rep, b.String()
}

// TestClientToCacheDroppedByPolicy: a client whose egress policy allows
// kube-dns:53 only is denied once redirected to the cache pod. Every client
// -> cache query of the healthy recording becomes "Policy denied DROPPED":
// this must fail, with the drop as evidence and the fix.
func TestClientToCacheDroppedByPolicy(t *testing.T) {
	t.Parallel()
	t.Run("drop events", func(t *testing.T) { t.Parallel(); clientToCacheDenied(t, 1, "Policy denied DROPPED") })
	// What the lab's agent records: a policy verdict with verdict DROPPED.
	t.Run("policy verdicts", func(t *testing.T) { t.Parallel(); clientToCacheDenied(t, 5, "EGRESS DENIED") })
}

func clientToCacheDenied(t *testing.T, eventType int32, printed string) {
	var dropped int
	flows := derive(load(t, "healthy.jsonpb"), func(f *flowpb.Flow) bool {
		if hasLabel(f.GetDestination(), cacheLabel) && !hasLabel(f.GetSource(), cacheLabel) && isRequest(f) {
			drop(f, flowpb.DropReason_POLICY_DENIED)
			f.EventType.Type = eventType
			if eventType == 5 {
				f.TrafficDirection = flowpb.TrafficDirection_EGRESS
			}
			dropped++
		}
		return true
	})
	if dropped == 0 {
		t.Fatal("no client -> cache query in the recording")
	}
	got := statuses(t, labConfig(), flows)
	want := all(Pass)
	want["clients-to-cache"], want["no-drops"] = Fail, Fail
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	rep, text := evaluateText(t, labConfig(), flows)
	if rep.Passed() {
		t.Error("passed with every client query dropped")
	}
	for _, want := range []string{printed, "(POLICY_DENIED)", "egress policy allows kube-dns but not the cache pods", "port 5353", PolicyDocs} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

// TestDropFromStartingPodIsNotCounted: Cilium drops a pod's first packets
// while its identity is still reserved:init, as the lab recorded for a
// client that queried as it started. The path is not at fault: verify
// still passes. The same drop from the client's own identity fails.
func TestDropFromStartingPodIsNotCounted(t *testing.T) {
	t.Parallel()
	var client *flowpb.Flow
	for _, r := range load(t, "healthy.jsonpb") {
		if f := r.GetFlow(); hasLabel(f.GetDestination(), cacheLabel) && !hasLabel(f.GetSource(), cacheLabel) && isRequest(f) {
			client = f
			break
		}
	}
	if client == nil {
		t.Fatal("no client -> cache query in the recording")
	}
	for _, tc := range []struct {
		name     string
		starting bool
		want     Status
	}{{"reserved:init", true, Pass}, {"the client's identity", false, Fail}} {
		t.Run(tc.name, func(t *testing.T) {
			extra := proto.Clone(client).(*flowpb.Flow)
			drop(extra, flowpb.DropReason_POLICY_DENIED)
			if tc.starting {
				extra.Source.Identity, extra.Source.Labels = initIdentity, []string{initLabel}
			}
			flows := append(load(t, "healthy.jsonpb"), &observerpb.GetFlowsResponse{
				NodeName: extra.GetNodeName(), Time: extra.GetTime(), ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: extra},
			})
			if got := statuses(t, labConfig(), flows)["no-drops"]; got != tc.want {
				t.Errorf("no-drops = %s with a drop from %s, want %s", got, tc.name, tc.want)
			}
		})
	}
}

// TestCacheToCoreDNSDropped: the cache's TCP forwards to CoreDNS denied at
// egress.
func TestCacheToCoreDNSDropped(t *testing.T) {
	t.Parallel()
	flows := derive(load(t, "healthy.jsonpb"), func(f *flowpb.Flow) bool {
		if hasLabel(f.GetSource(), cacheLabel) && hasLabel(f.GetDestination(), "k8s:k8s-app=kube-dns") && f.GetL4().GetTCP() != nil {
			if f.GetIsReply() == nil || isRequest(f) {
				drop(f, flowpb.DropReason_POLICY_DENIED)
				return true
			}
			return false // no replies to a dropped query
		}
		return true
	})
	got := statuses(t, labConfig(), flows)
	if got["cache-to-coredns-tcp"] != Fail || got["no-drops"] != Fail {
		t.Errorf("statuses %v, want cache-to-coredns-tcp and no-drops FAIL", got)
	}
	_, text := evaluateText(t, labConfig(), flows)
	if strings.Contains(text, "egress policy allows kube-dns but not the cache pods") {
		t.Errorf("a drop towards CoreDNS is explained as a client policy problem:\n%s", text)
	}
}

// TestOneOfTwoNodesBypassing: node-a records the healthy flows, node-b the
// bypass flows. node-b fails, named; node-a passing does not hide it.
func TestOneOfTwoNodesBypassing(t *testing.T) {
	t.Parallel()
	onNode := func(name string) func(*flowpb.Flow) bool {
		return func(f *flowpb.Flow) bool { f.NodeName = name; return true }
	}
	flows := append(derive(load(t, "healthy.jsonpb"), onNode("node-a")), derive(load(t, "bypass.jsonpb"), onNode("node-b"))...)
	rep, text := evaluateText(t, labConfig(), flows)
	var nodes []string
	for _, n := range rep.Nodes {
		nodes = append(nodes, n.Node+"="+string(n.Status))
	}
	if diff := cmp.Diff([]string{"node-a=PASS", "node-b=FAIL"}, nodes); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if rep.Passed() {
		t.Error("passed with node-b bypassing the cache")
	}
	if !strings.Contains(text, "(passed: node-a; failed: node-b; no client DNS traffic: none)") {
		t.Errorf("report does not name the nodes:\n%s", text)
	}
}

// TestNodeWithoutClientsIsNoData: a node that recorded only the cache's
// forwards (say, CoreDNS's node) neither proves nor fails the path.
func TestNodeWithoutClientsIsNoData(t *testing.T) {
	t.Parallel()
	flows := derive(load(t, "healthy.jsonpb"), func(f *flowpb.Flow) bool {
		if !hasLabel(f.GetSource(), cacheLabel) {
			f.NodeName = "node-a"
		} else {
			f.NodeName = "node-b"
		}
		return true
	})
	rep, _ := evaluateText(t, labConfig(), flows)
	if len(rep.Nodes) != 2 || rep.Nodes[1].Node != "node-b" || rep.Nodes[1].Status != NoData {
		t.Fatalf("nodes %+v, want node-b NO DATA", rep.Nodes)
	}
}

// TestCoreDNSOnAnotherTargetPort: kube-dns with targetPort 1053. With the
// port given, the healthy path passes and a bypass is seen; with the default
// (53), the TCP check fails rather than passing blind.
func TestCoreDNSOnAnotherTargetPort(t *testing.T) {
	t.Parallel()
	to1053 := func(f *flowpb.Flow) bool {
		if tcp := f.GetL4().GetTCP(); tcp != nil {
			if hasLabel(f.GetDestination(), "k8s:k8s-app=kube-dns") && tcp.DestinationPort == 53 {
				tcp.DestinationPort = 1053
			}
			if hasLabel(f.GetSource(), "k8s:k8s-app=kube-dns") && tcp.SourcePort == 53 {
				tcp.SourcePort = 1053
			}
		}
		if udp := f.GetL4().GetUDP(); udp != nil {
			if hasLabel(f.GetDestination(), "k8s:k8s-app=kube-dns") && udp.DestinationPort == 53 {
				udp.DestinationPort = 1053
			}
			if hasLabel(f.GetSource(), "k8s:k8s-app=kube-dns") && udp.SourcePort == 53 {
				udp.SourcePort = 1053
			}
		}
		return true
	}
	c := labConfig()
	c.KubeDNSPorts = []int{1053}
	if diff := cmp.Diff(all(Pass), statuses(t, c, derive(load(t, "healthy.jsonpb"), to1053))); diff != "" {
		t.Errorf("healthy on 1053 (-want +got):\n%s", diff)
	}
	if got := statuses(t, c, derive(load(t, "bypass.jsonpb"), to1053)); got["no-bypass"] != Fail {
		t.Errorf("bypass on 1053: no-bypass = %s, want FAIL", got["no-bypass"])
	}
	if got := statuses(t, labConfig(), derive(load(t, "healthy.jsonpb"), to1053)); got["cache-to-coredns-tcp"] != Fail {
		t.Errorf("healthy on 1053 checked at 53: cache-to-coredns-tcp = %s, want FAIL", got["cache-to-coredns-tcp"])
	}
}

// TestCacheWithCustomLabelsInAnotherNamespace: cache pods labelled
// app.kubernetes.io/name=dns-cache in namespace dns-cache. With the right
// selector they are the cache, not clients bypassing it.
func TestCacheWithCustomLabelsInAnotherNamespace(t *testing.T) {
	t.Parallel()
	relabel := func(e *flowpb.Endpoint) {
		if !hasLabel(e, cacheLabel) {
			return
		}
		for i, l := range e.Labels {
			switch l {
			case cacheLabel:
				e.Labels[i] = "k8s:app.kubernetes.io/name=dns-cache"
			case "k8s:io.kubernetes.pod.namespace=kube-system":
				e.Labels[i] = "k8s:io.kubernetes.pod.namespace=dns-cache"
			}
		}
		e.Namespace = "dns-cache"
	}
	flows := derive(load(t, "healthy.jsonpb"), func(f *flowpb.Flow) bool {
		relabel(f.GetSource())
		relabel(f.GetDestination())
		return true
	})
	c := labConfig()
	c.CacheSelector, c.CacheNamespace = "k8s:app.kubernetes.io/name=dns-cache", "dns-cache"
	if diff := cmp.Diff(all(Pass), statuses(t, c, flows)); diff != "" {
		t.Errorf("custom cache labels (-want +got):\n%s", diff)
	}
	if got := statuses(t, labConfig(), flows); got["clients-to-cache"] == Pass {
		t.Errorf("with the default selector the relabelled cache is still found: %v", got)
	}
}

// TestDroppedAnswers: the cache's answers to clients dropped (Hubble marks a
// DROPPED flow's is_reply unknown). The queries were delivered, so the path
// to the cache holds, but clients got no answer: a drop on the path.
func TestDroppedAnswers(t *testing.T) {
	t.Parallel()
	flows := derive(load(t, "healthy.jsonpb"), func(f *flowpb.Flow) bool {
		if f.GetIsReply() != nil && f.GetIsReply().GetValue() && hasLabel(f.GetSource(), cacheLabel) {
			drop(f, flowpb.DropReason_POLICY_DENIED)
		}
		return true
	})
	got := statuses(t, labConfig(), flows)
	if got["clients-to-cache"] != Pass || got["no-drops"] != Fail {
		t.Errorf("statuses %v, want clients-to-cache PASS and no-drops FAIL", got)
	}
}

// TestPolicyVerdictIsNotDelivery: a policy-verdict event says the policy let
// a packet through, not that it arrived. With only those left for the
// cache's TCP to CoreDNS, that check fails.
func TestPolicyVerdictIsNotDelivery(t *testing.T) {
	t.Parallel()
	kept := 0
	flows := derive(load(t, "healthy.jsonpb"), func(f *flowpb.Flow) bool {
		if hasLabel(f.GetSource(), cacheLabel) && hasLabel(f.GetDestination(), "k8s:k8s-app=kube-dns") && f.GetL4().GetTCP() != nil {
			if f.GetEventType().GetType() == 5 {
				kept++
				return true
			}
			return false
		}
		return true
	})
	if kept == 0 {
		t.Fatal("no policy-verdict event for the cache's TCP to CoreDNS in the recording")
	}
	if got := statuses(t, labConfig(), flows)["cache-to-coredns-tcp"]; got != Fail {
		t.Errorf("cache-to-coredns-tcp = %s on policy verdicts alone, want FAIL", got)
	}
}

// TestBypassFromTheHost: the bypass recording's client -> CoreDNS queries
// made to come from the node's host network namespace (as classic
// NodeLocal DNSCache's node-cache sends them, identity reserved:host) still
// fail no-bypass, and the reason says they came from no pod; with one of
// them from a pod again, the reason counts both and the evidence is the
// pod's flow.
func TestBypassFromTheHost(t *testing.T) {
	t.Parallel()
	bypass := func(f *flowpb.Flow) bool {
		return isRequest(f) && f.GetVerdict() == flowpb.Verdict_FORWARDED && hasLabel(f.GetDestination(), "k8s:k8s-app=kube-dns") && !hasLabel(f.GetSource(), cacheLabel)
	}
	fromHost := func(f *flowpb.Flow) {
		f.Source = &flowpb.Endpoint{Identity: 1, Labels: []string{"reserved:host"}}
	}
	bypassing := 0
	allHost := derive(load(t, "bypass.jsonpb"), func(f *flowpb.Flow) bool {
		if bypass(f) {
			bypassing++
			fromHost(f)
		}
		return true
	})
	if bypassing < 2 {
		t.Fatalf("the recording has %d bypassing queries; want at least 2", bypassing)
	}
	noBypass := func(rep Report) Result {
		t.Helper()
		for _, r := range rep.Nodes[0].Checks {
			if r.Name == "no-bypass" {
				return r
			}
		}
		t.Fatal("no no-bypass check")
		return Result{}
	}
	rep, _ := evaluateText(t, labConfig(), allHost)
	r := noBypass(rep)
	if r.Status != Fail || !strings.Contains(r.Why, "none from a pod") || !strings.Contains(r.Why, "host network namespace") {
		t.Errorf("every bypass from the host: %s %q; want FAIL saying none came from a pod", r.Status, r.Why)
	}
	first := true
	mixed := derive(load(t, "bypass.jsonpb"), func(f *flowpb.Flow) bool {
		if bypass(f) {
			if first { // the first stays a pod's
				first = false
			} else {
				fromHost(f)
			}
		}
		return true
	})
	rep, _ = evaluateText(t, labConfig(), mixed)
	r = noBypass(rep)
	want := fmt.Sprintf("1 from pods (this flow is one), %d from a node's host network namespace", r.Matched-1)
	if r.Status != Fail || !strings.Contains(r.Why, want) {
		t.Errorf("one bypass from a pod: %s %q; want FAIL with %q", r.Status, r.Why, want)
	}
	if f := r.Evidence.GetFlow(); FromNode(f) {
		t.Errorf("evidence from identity %d; want the pod's flow", f.GetSource().GetIdentity())
	}
	// The unchanged recording: a pod's bypass, no word of the host.
	rep, _ = evaluateText(t, labConfig(), load(t, "bypass.jsonpb"))
	if r := noBypass(rep); r.Status != Fail || strings.Contains(r.Why, "host network") {
		t.Errorf("pod bypass: %s %q; want FAIL without the host", r.Status, r.Why)
	}
}
