//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"

	"github.com/lrpdns/lrpdns/e2e/judge"
)

// loadClient is one client of a scenario under load.
type loadClient struct {
	judge.Client
	run func() (probeResult, error)
}

// underLoad runs the query mix from every client for d while action runs
// (started judge.Baseline after them), then judges each client's report by
// the scenario's entry in judge.Scenarios (key), with the evidence the
// action recorded and what Cilium's agents counted and logged meanwhile.
// title names the scenario in reports ("" is key). When the scenario ends
// with the redirect in place, lrpdns verify must pass on its last flows.
func (s *suite) underLoad(t *testing.T, key, title string, d time.Duration, action func(ev *judge.Evidence)) {
	t.Helper()
	for _, f := range s.runLoad(t, key, title, d, action) {
		errorf(t, "%s", f)
	}
}

// runLoad is underLoad returning what failed instead of failing the test:
// the failed clients' judgements (each a message) and, for a scenario that
// ends redirected, verify's.
func (s *suite) runLoad(t *testing.T, key, title string, d time.Duration, action func(ev *judge.Evidence)) []string {
	t.Helper()
	ctx := t.Context()
	var fails []string
	sc, ok := judge.Scenarios[key]
	if !ok {
		fatalf(t, "scenario %q is not in e2e/judge's table", key)
	}
	if title == "" {
		title = key
	}
	if why := s.withoutFallback(key); why != "" {
		sc = sc.WithByDesign(why)
	}
	clients := s.loadClients(ctx, d)
	before := s.noBackendCounts(t)
	results := make([]probeResult, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { results[i], errs[i] = c.run() })
	}
	began := time.Now()
	// Clients start within a second (kubectl exec); their baseline seconds
	// come before the action.
	time.Sleep(judge.Baseline + time.Second)
	start := time.Now()
	var ev judge.Evidence
	action(&ev)
	took := time.Since(start)
	// The flows of the change itself, read at once: under the suite's load
	// Hubble's ring buffers hold seconds to minutes.
	during, duringErr := s.fetchFlows(time.Since(began) + time.Second)
	wg.Wait()
	end := time.Now()
	ev.NoBackend = diffCounts(s.noBackendCounts(t), before)
	if timeouts(results) {
		ev.ProxyTimeouts = s.proxyTimeouts(t, began)
	}
	var after []*observerpb.GetFlowsResponse
	saved := false
	for i, c := range clients {
		r := results[i]
		csc := sc
		if why := s.pinnedToClassic(key, c.Kind); why != "" {
			csc = sc.WithByDesign(why)
		}
		v := judge.Judge(r, errs[i], c.Client, csc, ev)
		t.Logf("%s (%s): %d sent, %d answered, %d failed%s", title, r.Client, r.Sent, r.Answered, r.Failed, notes(v.Notes))
		if v.Passed() {
			continue
		}
		// A negative control's failures are expected: its flows (100 MB
		// and more per control) are not kept.
		if !saved && !s.controlRunning {
			if duringErr != nil {
				t.Logf("flows during the change: %v", duringErr)
			}
			s.writeFlows(t, title+" during the change", during)
			after = s.saveFlows(t, title, time.Since(began)+time.Second)
			saved = true
		}
		// Lines CI's tail keeps (each cut at 300 bytes), the most telling
		// first.
		msg := fmt.Sprintf("%s (%s on %s, %s): %s", title, c.Kind, c.Node, r.Client, strings.Join(v.Fail, "\n"))
		if d := judge.DNSErrors(judge.JoinFlows(during, after)); d != "" {
			msg += "\n" + d
		}
		fails = append(fails, msg)
	}
	t.Logf("%s: evidence: upstream deleted %s, ready %s; Cilium's no-backend counts %v; %d unanswered forwards logged by DNS proxies",
		title, clockOrNone(ev.UpstreamDeleted), clockOrNone(ev.UpstreamReady), ev.NoBackend, len(ev.ProxyTimeouts))
	if took > d-judge.Baseline {
		fails = append(fails, fmt.Sprintf("%s took %v, longer than the queries around it (%v)", title, took.Round(time.Second), d))
	}
	if sc.Redirected && !strings.HasPrefix(key, "migration") {
		if why := s.verifyScenario(t, title, time.Since(end)+6*time.Second); why != "" {
			fails = append(fails, why)
		}
	}
	return fails
}

// verifyScenario requires lrpdns verify to pass on the last flows of a
// scenario under load (the clients' queries of its last seconds): after
// the change, every node's clients reach their own cache again, none
// bypasses it, nothing is dropped.
//
// Judged are the clients that open a socket per query (the probe's socket
// kind, glibc): a socket kept across the change (c-ares, the probe's
// connected and TCP kinds) stays where connect() sent it, CoreDNS if the
// redirect was away for a while, until the client opens another; that is
// socket load balancing, and logged.
func (s *suite) verifyScenario(t *testing.T, title string, since time.Duration) string {
	t.Helper()
	keptPods := map[string]bool{}
	for _, p := range s.kept {
		keptPods[p] = true
	}
	for _, c := range libClients {
		if c.kind == "node.js" {
			keptPods[c.pod] = true
		}
	}
	rep, err := s.verifyClientsWithout(t, since, flowpb.IPVersion_IP_NOT_USED, func(f *flowpb.Flow) bool {
		kept := func(e *flowpb.Endpoint) bool { return e.GetNamespace() == "default" && keptPods[e.GetPodName()] }
		return kept(f.GetSource()) || kept(f.GetDestination())
	})
	if err != nil {
		return fmt.Sprintf("%s: verify on the scenario's last flows: %v", title, err)
	}
	if !rep.Passed() {
		return fmt.Sprintf("%s: lrpdns verify fails on the scenario's last %v of flows:\n%s", title, since.Round(time.Second), report(rep))
	}
	t.Logf("%s: lrpdns verify passes on the scenario's last %v of flows", title, since.Round(time.Second))
	return ""
}

// loadClients are a scenario's clients, each run for d: on the first
// client node, the probe with a new socket per query, one connected UDP
// socket (busy: a query every 20 ms; idle: one every 5 s, so it may send
// nothing while the old cache pod goes), one TCP connection and the
// resolver libraries; two probes again to kube-dns's IPv6 ClusterIP on a
// dual-stack cluster; a socket per query and a busy connected socket on
// every other client node.
func (s *suite) loadClients(ctx context.Context, d time.Duration) []loadClient {
	first := s.nodes[0]
	probeKind := func(pod, node, name, interval string, label string, flags ...string) loadClient {
		every, _ := time.ParseDuration(interval)
		return loadClient{judge.Client{Kind: name, Node: node, Timeout: 2 * time.Second, Interval: every}, func() (probeResult, error) {
			args := append([]string{"--client", name, "--duration", d.String(), "--interval", interval}, flags...)
			r, err := s.probeFrom(ctx, pod, append(args, s.mix...)...)
			r.Client += label
			return r, err
		}}
	}
	kept := s.kept[first]
	cs := []loadClient{
		probeKind(clientPod, first, "socket", "20ms", ""),
		probeKind(kept, first, "udp-connected", "20ms", ""),
		probeKind(kept, first, "udp-connected", "5s", ""),
		probeKind(kept, first, "tcp-keepalive", "20ms", ""),
	}
	if s.kubeDNSv6 != "" {
		cs = append(cs, probeKind(clientPod, first, "socket", "20ms", ", IPv6", "--server", s.kubeDNSv6),
			probeKind(kept, first, "udp-connected", "20ms", ", IPv6", "--server", s.kubeDNSv6))
	}
	for _, node := range s.nodes[1:] {
		cs = append(cs, probeKind(s.clients[node], node, "socket", "20ms", ", node "+node),
			probeKind(s.kept[node], node, "udp-connected", "20ms", ", node "+node))
	}
	for _, c := range libClients {
		cs = append(cs, loadClient{judge.Client{Kind: c.kind, Node: first, Library: true, Timeout: 5 * time.Second}, func() (probeResult, error) {
			return s.libResolve(ctx, c, append([]string{"--duration", fmt.Sprintf("%ds", int(d.Seconds()))}, s.mix...)...)
		}})
	}
	return cs
}

// noBackendCounts is Cilium's no-backend datapath count on every node
// (judge.NoBackendCount); a node whose count cannot be read is left out,
// and the reason logged: it gives no evidence.
func (s *suite) noBackendCounts(t *testing.T) map[string]int {
	out := map[string]int{}
	for _, node := range s.nodes {
		j, err := s.cluster.AgentExec(t.Context(), node, "cilium-dbg", "bpf", "metrics", "list", "-o", "json")
		if err == nil {
			var n int
			if n, err = judge.NoBackendCount([]byte(j)); err == nil {
				out[node] = n
				continue
			}
		}
		t.Logf("Cilium's datapath metrics on %s: %v", node, err)
	}
	return out
}

func diffCounts(now, before map[string]int) map[string]int {
	out := map[string]int{}
	for node, n := range now {
		if b, ok := before[node]; ok && n > b {
			out[node] = n - b
		}
	}
	return out
}

// timeouts reports whether any client had a timeout, which only Cilium's
// DNS proxies' logs can excuse.
func timeouts(rs []probeResult) bool {
	for _, r := range rs {
		for _, f := range r.Failures {
			if f.Kind == judge.KindTimeout {
				return true
			}
		}
	}
	return false
}

// proxyTimeouts reads what every node's agent logged since the scenario
// began, once the DNS proxy's 10 s wait for the last query is over.
func (s *suite) proxyTimeouts(t *testing.T, since time.Time) []judge.ProxyTimeout {
	time.Sleep(12 * time.Second)
	var out []judge.ProxyTimeout
	for _, node := range s.nodes {
		log, err := s.cluster.AgentLog(t.Context(), node, since)
		if err != nil {
			t.Logf("Cilium agent log on %s: %v", node, err)
			continue
		}
		out = append(out, judge.ParseProxyTimeouts(node, log)...)
	}
	return out
}

func notes(ns []string) string {
	if len(ns) == 0 {
		return ""
	}
	return " (" + strings.Join(ns, "; ") + ")"
}

func clockOrNone(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05.000")
}

// withoutFallback says why a scenario loses queries by design when clients
// use an address with nothing behind it but the redirect: it takes the
// redirect away for a while. "" when the scenario must lose nothing.
func (s *suite) withoutFallback(key string) string {
	if s.clusterDNS == "" {
		return ""
	}
	switch key {
	case "cache port 5353 -> 5354":
		return "the policies are withdrawn until the rollout completes"
	case "DaemonSet deleted with --cascade=orphan and re-applied", "cache DaemonSet deleted", "uninstall":
		return "the policies go with the DaemonSet"
	}
	return ""
}

// pinnedToClassic says why a client of kind loses queries by design in a
// scenario, or "": a kept UDP socket connected to classic NodeLocal
// DNSCache's address before lrpdns's address policy existed was not
// translated at connect(), and where socket load balancing runs in pods no
// later packet is; when classic's pod takes the address away, the socket
// has nothing behind it until the client opens a new one.
func (s *suite) pinnedToClassic(key, kind string) string {
	if !strings.HasPrefix(key, "migration") || kind != "udp-connected" || !s.socketLBInPods {
		return ""
	}
	return "the socket was connected to the bare address while classic served it, and socket load balancing translates at connect() only"
}

// exitCode is the exit code in a command's error, or -1.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}
