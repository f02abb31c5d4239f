package judge

import (
	"fmt"
	"slices"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/miekg/dns"
)

// DNSErrors sums up the DNS answers with an error rcode among flows (L7
// DNS, seen by Cilium's DNS proxy) by rcode, query, who answered whom and
// the time of the first: who sent a failed query its answer. "" when none.
func DNSErrors(flows []*observerpb.GetFlowsResponse) string {
	type key struct{ rcode, query, path string }
	count, first := map[key]int{}, map[key]string{}
	var keys []key
	for _, r := range flows {
		f := r.GetFlow()
		d := f.GetL7().GetDns()
		if d == nil || f.GetL7().GetType() != flowpb.L7FlowType_RESPONSE || d.GetRcode() == 0 {
			continue
		}
		k := key{dns.RcodeToString[int(d.GetRcode())], d.GetQuery(), fmt.Sprintf("%s -> %s (%s)", f.GetIP().GetSource(), f.GetIP().GetDestination(), d.GetObservationSource())}
		if count[k] == 0 {
			keys = append(keys, k)
			first[k] = f.GetTime().AsTime().UTC().Format("15:04:05.000")
		}
		count[k]++
	}
	if len(keys) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("DNS error answers in Hubble's flows:")
	for i, k := range keys {
		if i == 5 {
			fmt.Fprintf(&b, " and %d more kinds", len(keys)-i)
			break
		}
		fmt.Fprintf(&b, " %d %s for %s %s from %s;", count[k], k.rcode, k.query, k.path, first[k])
	}
	return strings.TrimSuffix(b.String(), ";")
}

// JoinFlows is first followed by the flows of then that came after
// first's last: two reads of one ring buffer, the later one maybe without
// the start.
func JoinFlows(first, then []*observerpb.GetFlowsResponse) []*observerpb.GetFlowsResponse {
	var last time.Time
	for _, r := range first {
		if tm := r.GetFlow().GetTime().AsTime(); tm.After(last) {
			last = tm
		}
	}
	out := slices.Clone(first)
	for _, r := range then {
		if r.GetFlow().GetTime().AsTime().After(last) {
			out = append(out, r)
		}
	}
	return out
}
