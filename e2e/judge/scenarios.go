package judge

import "time"

// Scenario is a change the suite makes under continuous queries, with what
// may excuse a failed query in it.
type Scenario struct {
	Name string
	// Allow: the causes outside lrpdns that may fail queries here, each
	// with its evidence and cap. Wrong answers, client errors and the pace
	// are judged whatever it says.
	Allow []Allowance
	// Redirected: the redirect is in place once the action is done, so
	// lrpdns verify must pass on the scenario's last flows.
	Redirected bool
}

// The allowances every scenario under load has, each tied to evidence.
var (
	noBackend       = NoBackend{Max: 5}
	proxyUnanswered = ProxyUnanswered{Wait: 12 * time.Second, Max: 3}
)

// Scenarios are the suite's changes under load, by name, as the suite runs
// them.
var Scenarios = map[string]Scenario{
	"kube-dns-upstream deleted by hand": {
		Allow:      []Allowance{UpstreamGap{Settle: time.Second, Max: 10}, noBackend, proxyUnanswered},
		Redirected: true,
	},
	"DaemonSet deleted with --cascade=orphan and re-applied": {Allow: []Allowance{noBackend, proxyUnanswered}, Redirected: true},
	"rollout restart":           {Allow: []Allowance{noBackend, proxyUnanswered}, Redirected: true},
	"a node's cache drained":    {Allow: []Allowance{noBackend, proxyUnanswered}, Redirected: true},
	"cache port 5353 -> 5354":   {Allow: []Allowance{noBackend, proxyUnanswered}, Redirected: true},
	"cache DaemonSet deleted":   {Allow: []Allowance{noBackend, proxyUnanswered}},
	"uninstall":                 {Allow: []Allowance{noBackend, proxyUnanswered}},
	"migration":                 {Allow: []Allowance{noBackend, proxyUnanswered}, Redirected: true},
	"migration undone":          {Allow: []Allowance{noBackend, proxyUnanswered}},
	"negative control":          {Allow: []Allowance{noBackend, proxyUnanswered}, Redirected: true},
	"upstream negative control": {Allow: []Allowance{UpstreamGap{Settle: time.Second, Max: 10}, noBackend, proxyUnanswered}, Redirected: true},
}

// WithByDesign is s where clients lose queries by design (why), measured,
// not required.
func (s Scenario) WithByDesign(why string) Scenario {
	s.Allow = append([]Allowance{ByDesign{Why: why}}, s.Allow...)
	return s
}
