package verify

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	v1 "github.com/cilium/cilium/pkg/hubble/api/v1"
	"github.com/cilium/cilium/pkg/hubble/filters"
)

// Config says what the path looks like in this cluster.
type Config struct {
	// Namespace of the cache and CoreDNS pods.
	Namespace string
	// CacheSelector and KubeDNSSelector are Hubble label selectors.
	CacheSelector   string
	KubeDNSSelector string
	// CachePort is the cache pod's DNS port (the redirect's backend port).
	CachePort int
	// ClusterDomain is the cluster's DNS domain, for the L7 checks.
	ClusterDomain string
	// NodeResolvers are the node's resolvers; empty means any destination
	// that is not a pod.
	NodeResolvers []netip.Addr
}

// DefaultConfig matches the shipped manifests.
func DefaultConfig() Config {
	return Config{
		Namespace:       "kube-system",
		CacheSelector:   "k8s:k8s-app=node-local-dns",
		KubeDNSSelector: "k8s:k8s-app=kube-dns",
		CachePort:       5353,
		ClusterDomain:   "cluster.local",
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
}

// Passed reports whether the results allow exit 0: every required check
// passed and no optional check failed.
func Passed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail || (r.Status == NoData && !r.Optional) {
			return false
		}
	}
	return true
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

func (c Config) selector(sel string) string {
	return sel + ",k8s:io.kubernetes.pod.namespace=" + c.Namespace
}

// dnsPorts are the ports a DNS request goes to: 53, and the cache's port.
func (c Config) dnsPorts() []string {
	if c.CachePort == 53 || c.CachePort == 0 {
		return []string{"53"}
	}
	return []string{"53", strconv.Itoa(c.CachePort)}
}

func (c Config) checks() []check {
	cache, kubeDNS := c.selector(c.CacheSelector), c.selector(c.KubeDNSSelector)
	dnsPorts := c.dnsPorts()
	requests := &flowpb.FlowFilter{DestinationPort: dnsPorts, Reply: []bool{false}}
	fromCache := &flowpb.FlowFilter{SourceLabel: []string{cache}, Reply: []bool{false}}
	toResolvers := &flowpb.FlowFilter{SourceLabel: []string{cache}, DestinationPort: []string{"53"}, Reply: []bool{false}}
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
			desc:  fmt.Sprintf("clients reach a node-local cache pod on port %s", strings.Join(dnsPorts, "/")),
			scope: filterSet{white: []*flowpb.FlowFilter{requests}, black: []*flowpb.FlowFilter{{SourceLabel: []string{cache}}}},
			match: filterSet{
				white: []*flowpb.FlowFilter{{DestinationLabel: []string{cache}, DestinationPort: dnsPorts, Reply: []bool{false}}},
				black: []*flowpb.FlowFilter{{SourceLabel: []string{cache}}},
			},
			whenOK:  "a client's query arrived at a cache pod",
			whenBad: "DNS queries flow, but none reaches a cache pod: the redirect is not in effect (this flow went elsewhere)",
		},
		{
			name: "cache-to-coredns-tcp", want: true,
			desc:    "cache pods reach CoreDNS pods over TCP port 53",
			scope:   filterSet{white: []*flowpb.FlowFilter{fromCache}},
			match:   filterSet{white: []*flowpb.FlowFilter{{SourceLabel: []string{cache}, DestinationLabel: []string{kubeDNS}, DestinationPort: []string{"53"}, Protocol: []string{"tcp"}, Reply: []bool{false}}}},
			whenOK:  "a cluster-domain miss went to CoreDNS over TCP",
			whenBad: "the cache sent traffic, but never to CoreDNS over TCP (this flow is what it sent)",
		},
		{
			name: "cache-to-node-resolvers", want: true,
			desc:    "cache pods reach the node's resolvers on port 53",
			scope:   filterSet{white: []*flowpb.FlowFilter{fromCache}},
			match:   filterSet{white: []*flowpb.FlowFilter{toResolvers}, black: notResolvers},
			whenOK:  "an external name went to a node resolver",
			whenBad: "the cache sent traffic, but never to a node resolver (this flow is what it sent)",
		},
		{
			name: "no-bypass", want: false,
			desc:  "no client reaches CoreDNS pods directly on port 53",
			scope: filterSet{white: []*flowpb.FlowFilter{requests}},
			match: filterSet{
				white: []*flowpb.FlowFilter{{DestinationLabel: []string{kubeDNS}, DestinationPort: []string{"53"}, Reply: []bool{false}}},
				black: []*flowpb.FlowFilter{{SourceLabel: []string{cache}}},
			},
			whenOK:  "every query to CoreDNS came from a cache pod",
			whenBad: "a client queried CoreDNS directly, bypassing the cache",
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
				white: []*flowpb.FlowFilter{{SourceLabel: []string{cache}, DestinationLabel: []string{kubeDNS}, Protocol: []string{"dns"}, Reply: []bool{false}}},
				black: []*flowpb.FlowFilter{{DnsQuery: clusterNames}},
			},
			whenOK:  "CoreDNS was asked only cluster-domain and reverse names",
			whenBad: "an external name was sent to CoreDNS",
		},
	}
}

func withDNSQuery(f *flowpb.FlowFilter, q []string) *flowpb.FlowFilter {
	c := &flowpb.FlowFilter{
		SourceLabel: f.SourceLabel, DestinationIp: f.DestinationIp, Reply: f.Reply,
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

// Evaluate runs every check over flows, in order.
func Evaluate(ctx context.Context, c Config, flows []*observerpb.GetFlowsResponse) ([]Result, error) {
	var out []Result
	for _, ch := range c.checks() {
		scope, err := compile(ctx, ch.scope)
		if err != nil {
			return nil, fmt.Errorf("check %s scope: %w", ch.name, err)
		}
		match, err := compile(ctx, ch.match)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", ch.name, err)
		}
		r := Result{Name: ch.name, Description: ch.desc, Optional: ch.optional}
		var firstInScope, firstMatch *observerpb.GetFlowsResponse
		for _, resp := range flows {
			f := resp.GetFlow()
			if f == nil {
				continue
			}
			ev := &v1.Event{Event: f, Timestamp: f.GetTime()}
			if !filters.Apply(scope.white, scope.black, ev) {
				continue
			}
			r.InScope++
			if firstInScope == nil {
				firstInScope = resp
			}
			if filters.Apply(match.white, match.black, ev) {
				r.Matched++
				if firstMatch == nil {
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
	return out, nil
}
