package verify

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	v1 "github.com/cilium/cilium/pkg/hubble/api/v1"
	"github.com/cilium/cilium/pkg/hubble/filters"
	monitorAPI "github.com/cilium/cilium/pkg/monitor/api"
	"google.golang.org/protobuf/proto"
)

// Config says what the path looks like in this cluster.
type Config struct {
	// CacheNamespace and KubeDNSNamespace are the namespaces of the cache
	// pods and of the CoreDNS pods.
	CacheNamespace   string
	KubeDNSNamespace string
	// CacheSelector and KubeDNSSelector are Hubble label selectors.
	CacheSelector   string
	KubeDNSSelector string
	// CachePort is the cache pod's DNS port (the redirect's backend port).
	CachePort int
	// KubeDNSPorts are the CoreDNS pods' DNS ports (kube-dns's target ports).
	KubeDNSPorts []int
	// ClusterDomain is the cluster's DNS domain, for the L7 checks.
	ClusterDomain string
	// NodeResolvers are the node's resolvers; empty means any destination
	// that is not a pod.
	NodeResolvers []netip.Addr
	// RedirectCreated is when the redirect policy that Discover read was
	// created (zero: unknown): flows before it show the path before the
	// redirect, not a fault of it.
	RedirectCreated time.Time
	// ClientIPVersion limits the checks of clients' queries
	// (clients-to-cache, no-bypass) to queries of one IP version, so that
	// IPv4 clients cannot pass for IPv6 ones; IP_NOT_USED judges both.
	ClientIPVersion flowpb.IPVersion
}

// DefaultConfig matches the shipped manifests.
func DefaultConfig() Config {
	return Config{
		CacheNamespace:   "kube-system",
		KubeDNSNamespace: "kube-system",
		CacheSelector:    "k8s:k8s-app=node-local-dns",
		KubeDNSSelector:  "k8s:k8s-app=kube-dns",
		CachePort:        5353,
		KubeDNSPorts:     []int{53},
		ClusterDomain:    "cluster.local",
	}
}

// Status is a check's verdict.
type Status string

// Verdicts.
const (
	Pass   Status = "PASS"
	Fail   Status = "FAIL"
	NoData Status = "NO DATA"
)

// Result is one check's verdict with the flow that shows it.
type Result struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      Status `json:"status"`
	// Optional checks (L7 DNS) need data not every cluster records; their
	// NO DATA does not fail the run.
	Optional bool `json:"optional,omitempty"`
	// Matched counts flows matching the check; InScope counts the flows it
	// looked at.
	Matched  int                          `json:"matched"`
	InScope  int                          `json:"inScope"`
	Evidence *observerpb.GetFlowsResponse `json:"-"`
	// Why says what the evidence shows.
	Why string `json:"why"`
	// matchedFromNodes counts the matching flows that came from a node's
	// host network namespace; the evidence is a pod's flow when one matched.
	matchedFromNodes int
	// mustFind: the check wants a matching flow (clients reach the cache);
	// otherwise it wants none (no bypass, no drop).
	mustFind bool
}

type filterSet struct{ white, black []*flowpb.FlowFilter }

type check struct {
	name, desc string
	// want: a matching flow must exist (true) or must not (false).
	want     bool
	optional bool
	scope    filterSet
	match    filterSet
	whenOK   string // what a PASS means
	whenBad  string // what a FAIL means
}

func selector(sel, namespace string) string {
	return sel + ",k8s:io.kubernetes.pod.namespace=" + namespace
}

// kubeDNSPorts are CoreDNS's DNS ports as filter values.
func (c Config) kubeDNSPorts() []string {
	if len(c.KubeDNSPorts) == 0 {
		return []string{"53"}
	}
	var out []string
	for _, p := range c.KubeDNSPorts {
		out = appendOnce(out, strconv.Itoa(p))
	}
	return out
}

// dnsPorts are the ports a DNS request goes to: 53 (the Service, a node
// resolver), the cache's port, and CoreDNS's.
func (c Config) dnsPorts() []string {
	out := []string{"53"}
	if c.CachePort != 0 {
		out = appendOnce(out, strconv.Itoa(c.CachePort))
	}
	for _, p := range c.kubeDNSPorts() {
		out = appendOnce(out, p)
	}
	return out
}

func appendOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// delivered are the verdicts that show traffic reaching its destination (a
// pod, the stack, the network, the DNS proxy). Only flows with them are
// evidence of a path; a DROPPED flow is not a delivered query.
var delivered = []flowpb.Verdict{flowpb.Verdict_FORWARDED, flowpb.Verdict_REDIRECTED}

// policyVerdicts are policy-verdict events ("EGRESS ALLOWED"): the policy
// allowed a packet, which says nothing of where it went. They are not
// evidence of delivery; trace and L7 events are.
var policyVerdicts = &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: monitorAPI.MessageTypePolicyVerdict}}}

func (c Config) checks() []check {
	cache, kubeDNS := selector(c.CacheSelector, c.CacheNamespace), selector(c.KubeDNSSelector, c.KubeDNSNamespace)
	dnsPorts, kubeDNSPorts := c.dnsPorts(), c.kubeDNSPorts()
	var ipVersion []flowpb.IPVersion
	over := ""
	if c.ClientIPVersion != flowpb.IPVersion_IP_NOT_USED {
		ipVersion = []flowpb.IPVersion{c.ClientIPVersion}
		over = " over " + c.ClientIPVersion.String()
	}
	requests := &flowpb.FlowFilter{DestinationPort: dnsPorts, Reply: []bool{false}, IpVersion: ipVersion}
	fromCache := &flowpb.FlowFilter{SourceLabel: []string{cache}, Reply: []bool{false}}
	toResolvers := &flowpb.FlowFilter{SourceLabel: []string{cache}, DestinationPort: []string{"53"}, Reply: []bool{false}, Verdict: delivered}
	var notResolvers []*flowpb.FlowFilter
	if len(c.NodeResolvers) > 0 {
		for _, a := range c.NodeResolvers {
			toResolvers.DestinationIp = append(toResolvers.DestinationIp, a.String())
		}
	} else {
		// Any destination that is not a pod.
		notResolvers = []*flowpb.FlowFilter{{DestinationLabel: []string{"k8s:io.kubernetes.pod.namespace"}}}
	}
	clusterNames := []string{
		`(^|\.)` + regexp.QuoteMeta(strings.TrimSuffix(c.ClusterDomain, ".")) + `\.?$`,
		`\.in-addr\.arpa\.?$`, `\.ip6\.arpa\.?$`,
	}
	l7 := &flowpb.FlowFilter{SourceLabel: []string{cache}, Protocol: []string{"dns"}, Reply: []bool{false}}
	return []check{
		{
			name: "clients-to-cache", want: true,
			desc: fmt.Sprintf("clients reach a node-local cache pod on port %s%s", strings.Join(dnsPorts, "/"), over),
			// Queries for kube-dns: delivered to (or dropped on the way to)
			// a cache pod or a CoreDNS pod. CoreDNS's own forwards to its
			// upstream, and queries sent straight to another resolver, are no
			// client's.
			scope: filterSet{
				white: []*flowpb.FlowFilter{withDestination(requests, cache), withDestination(requests, kubeDNS)},
				black: []*flowpb.FlowFilter{{SourceLabel: []string{cache}}, {SourceLabel: []string{kubeDNS}}},
			},
			match: filterSet{
				white: []*flowpb.FlowFilter{{DestinationLabel: []string{cache}, DestinationPort: dnsPorts, Reply: []bool{false}, Verdict: delivered, IpVersion: ipVersion}},
				black: []*flowpb.FlowFilter{{SourceLabel: []string{cache}}, policyVerdicts},
			},
			whenOK:  "a client's query arrived at a cache pod",
			whenBad: "DNS queries flow, but none is delivered to a cache pod: the redirect is not in effect, or the queries are dropped (this flow is one of them)",
		},
		{
			name: "cache-to-coredns-tcp", want: true,
			desc:    fmt.Sprintf("cache pods reach CoreDNS pods over TCP port %s", strings.Join(kubeDNSPorts, "/")),
			scope:   filterSet{white: []*flowpb.FlowFilter{fromCache}},
			match:   filterSet{white: []*flowpb.FlowFilter{{SourceLabel: []string{cache}, DestinationLabel: []string{kubeDNS}, DestinationPort: kubeDNSPorts, Protocol: []string{"tcp"}, Reply: []bool{false}, Verdict: delivered}}, black: []*flowpb.FlowFilter{policyVerdicts}},
			whenOK:  "a cluster-domain miss went to CoreDNS over TCP",
			whenBad: "the cache sent traffic, but none was delivered to CoreDNS over TCP (this flow is what it sent)",
		},
		{
			name: "cache-to-node-resolvers", want: true,
			desc:    "cache pods reach the node's resolvers on port 53",
			scope:   filterSet{white: []*flowpb.FlowFilter{fromCache}},
			match:   filterSet{white: []*flowpb.FlowFilter{toResolvers}, black: append([]*flowpb.FlowFilter{policyVerdicts}, notResolvers...)},
			whenOK:  "an external name went to a node resolver",
			whenBad: "the cache sent traffic, but none was delivered to a node resolver (this flow is what it sent)",
		},
		{
			name: "no-bypass", want: false,
			desc:  fmt.Sprintf("no client reaches CoreDNS pods directly on port %s%s", strings.Join(kubeDNSPorts, "/"), over),
			scope: filterSet{white: []*flowpb.FlowFilter{requests}},
			match: filterSet{
				white: []*flowpb.FlowFilter{{DestinationLabel: []string{kubeDNS}, DestinationPort: kubeDNSPorts, Reply: []bool{false}, Verdict: delivered, IpVersion: ipVersion}},
				black: []*flowpb.FlowFilter{{SourceLabel: []string{cache}}, {SourceLabel: []string{kubeDNS}}},
			},
			whenOK:  "every query delivered to CoreDNS came from a cache pod",
			whenBad: "a client queried CoreDNS directly, bypassing the cache",
		},
		{
			name: "no-drops", want: false,
			desc: "no DNS query or answer on the path is dropped",
			// A pod whose identity Cilium has not resolved yet (reserved:init)
			// has its packets dropped whatever their path, as it starts:
			// not a fault of the DNS path, so not counted.
			scope: filterSet{
				white: []*flowpb.FlowFilter{{DestinationPort: dnsPorts}, {SourcePort: dnsPorts}},
				black: []*flowpb.FlowFilter{{SourceLabel: []string{initLabel}}, {SourceIdentity: []uint32{initIdentity}}},
			},
			match: filterSet{white: []*flowpb.FlowFilter{
				{DestinationPort: dnsPorts, Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}},
				{SourcePort: dnsPorts, Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}},
			}},
			whenOK:  "no DNS packet was dropped",
			whenBad: "a DNS packet was dropped",
		},
		{
			name: "cluster-names-not-to-node-resolvers", want: false, optional: true,
			desc:    "cluster-domain names are never sent to the node's resolvers (L7 DNS)",
			scope:   filterSet{white: []*flowpb.FlowFilter{l7}},
			match:   filterSet{white: []*flowpb.FlowFilter{withDNSQuery(toResolvers, clusterNames)}, black: notResolvers},
			whenOK:  "no cluster-domain name left for a node resolver",
			whenBad: "a cluster-domain name was sent to a node resolver",
		},
		{
			name: "external-names-not-to-coredns", want: false, optional: true,
			desc:  "external names are never sent to CoreDNS (L7 DNS)",
			scope: filterSet{white: []*flowpb.FlowFilter{l7}},
			match: filterSet{
				white: []*flowpb.FlowFilter{{SourceLabel: []string{cache}, DestinationLabel: []string{kubeDNS}, Protocol: []string{"dns"}, Reply: []bool{false}, Verdict: delivered}},
				black: []*flowpb.FlowFilter{{DnsQuery: clusterNames}},
			},
			whenOK:  "CoreDNS was asked only cluster-domain and reverse names",
			whenBad: "an external name was sent to CoreDNS",
		},
	}
}

// withDestination is f limited to destinations with the label selector.
func withDestination(f *flowpb.FlowFilter, sel string) *flowpb.FlowFilter {
	c := proto.Clone(f).(*flowpb.FlowFilter)
	c.DestinationLabel = []string{sel}
	return c
}

func withDNSQuery(f *flowpb.FlowFilter, q []string) *flowpb.FlowFilter {
	c := &flowpb.FlowFilter{
		SourceLabel: f.SourceLabel, DestinationIp: f.DestinationIp, Reply: f.Reply, Verdict: f.Verdict,
		Protocol: []string{"dns"}, DnsQuery: q,
	}
	return c
}

var discard = slog.New(slog.DiscardHandler)

type compiled struct {
	white, black filters.FilterFuncs
}

func compile(ctx context.Context, s filterSet) (compiled, error) {
	w, err := filters.BuildFilterList(ctx, s.white, filters.DefaultFilters(discard))
	if err != nil {
		return compiled{}, fmt.Errorf("failed to build filters: %w", err)
	}
	b, err := filters.BuildFilterList(ctx, s.black, filters.DefaultFilters(discard))
	if err != nil {
		return compiled{}, fmt.Errorf("failed to build filters: %w", err)
	}
	return compiled{w, b}, nil
}

// NodeReport is every check evaluated on the flows one node observed.
type NodeReport struct {
	Node string `json:"node"`
	// Status is PASS or FAIL for a node with client DNS traffic; NO DATA for
	// a node without (unless a check failed there).
	Status Status   `json:"status"`
	Checks []Result `json:"checks"`
}

// Report is the verdict per node.
type Report struct {
	Nodes []NodeReport `json:"nodes"`
}

// Passed reports whether the path is proven: some node had clients, and no
// node failed.
func (r Report) Passed() bool {
	proven := false
	for _, n := range r.Nodes {
		switch n.Status {
		case Fail:
			return false
		case Pass:
			proven = true
		}
	}
	return proven
}

// nodeOf is the node that observed a flow.
func nodeOf(resp *observerpb.GetFlowsResponse) string {
	if n := resp.GetNodeName(); n != "" {
		return n
	}
	if n := resp.GetFlow().GetNodeName(); n != "" {
		return n
	}
	return "(unknown node)"
}

// Evaluate groups flows by the node that observed them and runs every check
// on each node's flows: one healthy node cannot hide a broken one.
func Evaluate(ctx context.Context, c Config, flows []*observerpb.GetFlowsResponse) (Report, error) {
	checks, err := c.compile(ctx)
	if err != nil {
		return Report{}, err
	}
	byNode := map[string][]*observerpb.GetFlowsResponse{}
	for _, f := range flows {
		if f.GetFlow() != nil {
			byNode[nodeOf(f)] = append(byNode[nodeOf(f)], f)
		}
	}
	var rep Report
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		rs := evaluate(checks, byNode[node])
		c.explain(ctx, rs)
		n := NodeReport{Node: node, Checks: rs, Status: Pass}
		for _, r := range rs {
			if r.Status == Fail || (r.Status == NoData && !r.Optional) {
				n.Status = Fail
			}
		}
		if n.Status == Fail && rs[0].InScope == 0 && !failedNegative(rs) {
			// No client traffic here: what is missing (no external name
			// asked, say) proves nothing; only a bypass or a drop fails.
			n.Status = NoData
		}
		rep.Nodes = append(rep.Nodes, n)
	}
	return rep, nil
}

// failedNegative says whether a check that wants no matching flow (no
// bypass, no drop) failed.
func failedNegative(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == Fail && !r.mustFind })
}

type compiledCheck struct {
	check
	scope, match compiled
}

func (c Config) compile(ctx context.Context) ([]compiledCheck, error) {
	var out []compiledCheck
	for _, ch := range c.checks() {
		scope, err := compile(ctx, ch.scope)
		if err != nil {
			return nil, fmt.Errorf("check %s scope: %w", ch.name, err)
		}
		match, err := compile(ctx, ch.match)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", ch.name, err)
		}
		out = append(out, compiledCheck{ch, scope, match})
	}
	return out, nil
}

// evaluate runs every check over flows, in order.
func evaluate(checks []compiledCheck, flows []*observerpb.GetFlowsResponse) []Result {
	var out []Result
	for _, ch := range checks {
		r := Result{Name: ch.name, Description: ch.desc, Optional: ch.optional, mustFind: ch.want}
		var firstInScope, firstMatch *observerpb.GetFlowsResponse
		for _, resp := range flows {
			f := resp.GetFlow()
			ev := &v1.Event{Event: f, Timestamp: f.GetTime()}
			if !filters.Apply(ch.scope.white, ch.scope.black, ev) {
				continue
			}
			r.InScope++
			if firstInScope == nil {
				firstInScope = resp
			}
			if filters.Apply(ch.match.white, ch.match.black, ev) {
				r.Matched++
				fromNode := FromNode(f)
				if fromNode {
					r.matchedFromNodes++
				}
				if firstMatch == nil || (!fromNode && FromNode(firstMatch.GetFlow())) {
					firstMatch = resp
				}
			}
		}
		switch {
		case r.InScope == 0:
			r.Status, r.Why = NoData, "no flow in scope: is Hubble recording this traffic, and the window right?"
		case ch.want && r.Matched > 0:
			r.Status, r.Evidence, r.Why = Pass, firstMatch, ch.whenOK
		case ch.want:
			r.Status, r.Evidence, r.Why = Fail, firstInScope, ch.whenBad
		case r.Matched > 0:
			r.Status, r.Evidence, r.Why = Fail, firstMatch, ch.whenBad
		default:
			r.Status, r.Why = Pass, fmt.Sprintf("%s (%d flows looked at)", ch.whenOK, r.InScope)
		}
		out = append(out, r)
	}
	return out
}

// The identity of an endpoint whose labels Cilium does not know yet.
const (
	initLabel    = "reserved:init"
	initIdentity = 5
)

// FromNode says whether a flow's source is a node's host network
// namespace (Cilium's reserved identities host, this node, and
// remote-node): hostNetwork pods, such as classic NodeLocal DNSCache's
// node-cache, and node processes.
func FromNode(f *flowpb.Flow) bool {
	const host, remoteNode = 1, 6
	id := f.GetSource().GetIdentity()
	return id == host || id == remoteNode
}

// PolicyDocs is where the README says which policies the redirect needs.
const PolicyDocs = "https://github.com/lrpdns/lrpdns/blob/main/docs/install.md#network-policies"

// explain adds the drop reason to a failed no-drops check and, for a policy
// drop of a query to a cache pod, the fix.
func (c Config) explain(ctx context.Context, rs []Result) {
	toCache, err := filters.BuildFilterList(ctx, []*flowpb.FlowFilter{{DestinationLabel: []string{selector(c.CacheSelector, c.CacheNamespace)}}}, filters.DefaultFilters(discard))
	if err != nil {
		return
	}
	for i, r := range rs {
		if r.Name == "no-bypass" && r.Status == Fail && r.matchedFromNodes > 0 {
			fromPods := r.Matched - r.matchedFromNodes
			if fromPods == 0 {
				rs[i].Why = fmt.Sprintf("%s: all %d from a node's host network namespace (hostNetwork pods or node processes, such as classic NodeLocal DNSCache's node-cache), none from a pod", r.Why, r.Matched)
			} else {
				rs[i].Why = fmt.Sprintf("%s: %d from pods (this flow is one), %d from a node's host network namespace", r.Why, fromPods, r.matchedFromNodes)
			}
		}
		if r.Name != "no-drops" || r.Status != Fail || r.Evidence == nil {
			continue
		}
		f := r.Evidence.GetFlow()
		reason := f.GetDropReasonDesc().String()
		rs[i].Why = fmt.Sprintf("%s (%s)", r.Why, reason)
		if strings.HasPrefix(reason, "POLICY_") && filters.Apply(toCache, nil, &v1.Event{Event: f}) {
			rs[i].Why += fmt.Sprintf(": the client's egress policy allows kube-dns but not the cache pods it is redirected to; allow %s on port %d too (%s)",
				c.CacheSelector, c.CachePort, PolicyDocs)
		}
	}
}
