//go:build e2e

package e2e

import (
	"strconv"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	v1 "github.com/cilium/cilium/pkg/hubble/api/v1"
	"github.com/cilium/cilium/pkg/hubble/filters"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/e2e/judge"
	"github.com/lrpdns/lrpdns/pkg/verify"
)

// noCacheLabel keeps the cache DaemonSet off a node (drainNode).
const noCacheLabel = "lrpdns.io/e2e-no-cache"

// podsByNode are the pods matching labels in namespace, by node, not
// terminating.
func (s *suite) podsByNode(t *testing.T, namespace string, labels map[string]string) map[string][]string {
	t.Helper()
	pods := &corev1.PodList{}
	if err := s.c.List(t.Context(), pods, client.InNamespace(namespace), client.MatchingLabels(labels)); err != nil {
		fatal(t, err)
	}
	out := map[string][]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], namespace+"/"+p.Name)
		}
	}
	return out
}

// deliveredFrom counts the DNS queries from a client pod ("ns/name") that
// Hubble shows delivered (forwarded or redirected, as lrpdns verify takes
// them), by destination pod ("ns/name"; "" when not a pod).
func deliveredFrom(t *testing.T, flows []*observerpb.GetFlowsResponse, pod string, cachePort int) map[string]int {
	t.Helper()
	f := []*flowpb.FlowFilter{{
		SourcePod:       []string{pod},
		DestinationPort: []string{"53", strconv.Itoa(cachePort)},
		Reply:           []bool{false},
		Verdict:         []flowpb.Verdict{flowpb.Verdict_FORWARDED, flowpb.Verdict_REDIRECTED},
	}}
	white, err := filters.BuildFilterList(t.Context(), f, filters.DefaultFilters(nil))
	if err != nil {
		fatal(t, err)
	}
	out := map[string]int{}
	for _, resp := range flows {
		fl := resp.GetFlow()
		// Hubble's pod filter matches name prefixes: client-x is not client.
		if fl == nil || !filters.Apply(white, nil, &v1.Event{Event: fl}) || fl.GetSource().GetNamespace()+"/"+fl.GetSource().GetPodName() != pod {
			continue
		}
		dst := ""
		if d := fl.GetDestination(); d.GetPodName() != "" {
			dst = d.GetNamespace() + "/" + d.GetPodName()
		}
		out[dst]++
	}
	return out
}

// nodeLocal proves locality on a cluster of several nodes: each node's
// client is answered by the cache pod on its own node and by no other
// pod, and on every node, also one without a CoreDNS pod, the cache sends
// cluster-domain misses to CoreDNS over TCP (lrpdns verify, per node).
func (s *suite) nodeLocal(t *testing.T) {
	if len(s.nodes) < 2 {
		t.Skip("one node: any cache is the local one")
	}
	ctx := t.Context()
	cfg, err := s.verifyConfig(t)
	if err != nil {
		fatal(t, err)
	}
	caches := s.podsByNode(t, s.names.Namespace, map[string]string{"k8s-app": s.names.DaemonSet})
	coreDNS := s.podsByNode(t, s.names.Namespace, map[string]string{"k8s-app": "kube-dns"})
	t.Logf("cache pods by node %v; CoreDNS pods by node %v", caches, coreDNS)
	began := time.Now()
	for _, node := range s.nodes {
		if len(caches[node]) != 1 {
			fatalf(t, "node %s runs cache pods %v, want one", node, caches[node])
		}
		client := "default/" + s.clients[node]
		start := time.Now()
		r, err := s.probeFrom(ctx, s.clients[node], append([]string{"--count", "40", "--interval", "20ms"}, s.mix...)...)
		if err != nil || r.Sent != 40 || r.Answered != r.Sent {
			errorf(t, "node %s: probe: %+v, %v; want 40 answered", node, r, err)
		}
		time.Sleep(time.Second)
		flows, err := verify.FromServer(ctx, s.cluster.HubbleServer(), time.Since(start), cfg)
		if err != nil {
			fatalf(t, "failed to read flows from Hubble: %v", err)
		}
		got := deliveredFrom(t, flows, client, cfg.CachePort)
		local := caches[node][0]
		t.Logf("node %s: client %s answered by cache pod %s (%d delivered queries); all destinations: %v", node, client, local, got[local], got)
		if got[local] == 0 {
			errorf(t, "node %s: no query of %s delivered to its node's cache pod %s: %v", node, client, local, got)
		}
		for dst, n := range got {
			if dst != local {
				errorf(t, "node %s: %d queries of %s delivered to %q, not its node's cache pod %s", node, n, client, dst, local)
			}
		}
	}
	rep, err := s.verify(t, time.Since(began)+time.Second)
	if err != nil {
		fatal(t, err)
	}
	t.Logf("lrpdns verify, per node:\n%s", report(rep))
	for _, n := range rep.Nodes {
		for _, c := range n.Checks {
			if c.Name == "cache-to-coredns-tcp" && c.Status != verify.Pass {
				errorf(t, "node %s (CoreDNS pods there: %v): %s %s: %s", n.Node, coreDNS[n.Node], c.Name, c.Status, c.Why)
			}
		}
	}
	if !rep.Passed() {
		errorf(t, "lrpdns verify did not pass on every node")
	}
	if len(coreDNS) == len(s.nodes) {
		t.Logf("every node runs a CoreDNS pod: no cache had to reach CoreDNS on another node")
	}
}

// drainNode keeps the cache off the last node for a while, under queries
// from a client on every node: that node's clients go to kube-dns (CoreDNS)
// and lose nothing, the other nodes' clients stay on their own caches.
func (s *suite) drainNode(t *testing.T) {
	if len(s.nodes) < 2 {
		t.Skip("one node: draining it is the DaemonSet deleted")
	}
	ctx := t.Context()
	node := s.nodes[len(s.nodes)-1]
	setLabel := func(value *string) {
		n := &corev1.Node{}
		if err := s.c.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
			fatal(t, err)
		}
		patch := client.MergeFrom(n.DeepCopy())
		if value == nil {
			delete(n.Labels, noCacheLabel)
		} else {
			n.Labels[noCacheLabel] = *value
		}
		if err := s.c.Patch(ctx, n, patch); err != nil {
			fatal(t, err)
		}
	}
	// The DaemonSet keeps off labelled nodes: a template change, rolled out
	// first, and taken back at the end.
	s.patchDaemonSet(t, `{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"`+noCacheLabel+`","operator":"DoesNotExist"}]}]}}}}}}}`)
	time.Sleep(2 * time.Second)
	s.waitRedirect(t, nil)
	cfg, err := s.verifyConfig(t)
	if err != nil {
		fatal(t, err)
	}
	s.underLoad(t, "a node's cache drained", "node "+node+"'s cache drained", 75*time.Second, func(*judge.Evidence) {
		yes := "true"
		setLabel(&yes)
		waitFor(t, time.Minute, "no cache pod on "+node, func() bool {
			for _, p := range s.cacheObjects(t) {
				if p.Spec.NodeName == node {
					return false
				}
			}
			return true
		})
		start := time.Now()
		time.Sleep(10 * time.Second)
		flows, err := verify.FromServer(ctx, s.cluster.HubbleServer(), time.Since(start), cfg)
		if err != nil {
			errorf(t, "failed to read flows from Hubble: %v", err)
		}
		caches := s.podsByNode(t, s.names.Namespace, map[string]string{"k8s-app": s.names.DaemonSet})
		coreDNS := s.podsByNode(t, s.names.Namespace, map[string]string{"k8s-app": "kube-dns"})
		isCoreDNS := map[string]bool{}
		for _, pods := range coreDNS {
			for _, p := range pods {
				isCoreDNS[p] = true
			}
		}
		for _, n := range s.nodes {
			got := deliveredFrom(t, flows, "default/"+s.clients[n], cfg.CachePort)
			t.Logf("while %s is drained: node %s's client's queries delivered to %v", node, n, got)
			for dst, count := range got {
				switch {
				case n == node && !isCoreDNS[dst]:
					errorf(t, "drained node %s: %d queries delivered to %q, want CoreDNS only", n, count, dst)
				case n != node && (len(caches[n]) != 1 || dst != caches[n][0]):
					errorf(t, "node %s: %d queries delivered to %q, want its own cache pod %v only", n, count, dst, caches[n])
				}
			}
			if len(got) == 0 {
				errorf(t, "node %s: no delivered query in the window", n)
			}
		}
		setLabel(nil)
		waitFor(t, time.Minute, "the cache back on "+node, func() bool {
			_, ok := s.podsByNode(t, s.names.Namespace, map[string]string{"k8s-app": s.names.DaemonSet})[node]
			return ok && s.rolledOut(ctx)
		})
	})
	s.patchDaemonSet(t, `{"spec":{"template":{"spec":{"affinity":null}}}}`)
	time.Sleep(2 * time.Second)
	s.waitRedirect(t, nil)
}
