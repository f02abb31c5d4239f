//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/lrpdns/lrpdns/pkg/verify"
)

// keepClientPolicy puts the clients behind docs/install.md's toFQDNs
// policy, as written, for the rest of the suite (LRPDNS_E2E_CLIENT_POLICY):
// their egress is then default-deny but for DNS to the cache pods and
// kube-dns and the one name, and their DNS over UDP goes through Cilium's
// DNS proxy in every scenario after. verify must pass under it.
func (s *suite) keepClientPolicy(t *testing.T) {
	if !s.clientsBehindPolicy {
		t.Skip("the clients' egress is open (LAB_POLICY=clients keeps them behind the documented policy)")
	}
	if docPatch(clientPolicyDoc) == "" {
		fatalf(t, "docs/install.md has no kubectl patch for %s", clientPolicyDoc)
	}
	y, err := fqdnPolicyYAML(s.names.DaemonSet, "api.example.com")
	if err != nil {
		fatal(t, err)
	}
	s.applyYAML(t, y)
	time.Sleep(3 * time.Second) // the agent computes the policy
	s.verifyPasses(t)
}

// connectJS connects to ADDR:PORT from the Node.js client, after resolving
// NAME through the pod's resolver when given (node -e connectJS ADDR PORT
// [NAME]), and prints the address; a refused, reset or silent connection is
// fine: only the flow's verdict is looked at.
const connectJS = `const [addr, port, name] = process.argv.slice(1);
(async () => {
  const ip = name ? (await require('dns').promises.resolve4(name))[0] : addr;
  await new Promise(done => {
    const s = require('net').connect({host: ip, port: Number(port)});
    const end = () => { s.destroy(); done(); };
    s.setTimeout(1500); s.on('connect', end); s.on('error', end); s.on('timeout', end);
  });
  console.log(ip);
})().catch(e => { console.log('error: ' + e.message); process.exit(1); });`

// fqdnPolicy applies the documented toFQDNs policy to the clients: a
// connection to the external name's address is denied before the client
// resolves the name, and leaves once it has, through the cache (Cilium's
// DNS proxy sees the query on its way to the cache pod). Hubble's verdicts
// on the connection's packets are the evidence.
func (s *suite) fqdnPolicy(t *testing.T) {
	answer := os.Getenv("LRPDNS_E2E_EXTERNAL_ANSWER")
	if answer == "" {
		t.Skip("the external names' address is unknown (LRPDNS_E2E_EXTERNAL_ANSWER)")
	}
	name := fmt.Sprintf("fqdn-%d.example.com", time.Now().Unix())
	y, err := fqdnPolicyYAML(s.names.DaemonSet, name)
	if err != nil {
		fatal(t, err)
	}
	u := s.applyYAML(t, y)
	t.Cleanup(func() { s.removeClientPolicy(u) })
	time.Sleep(3 * time.Second) // the agent computes the policy
	connect := func(name string) (string, map[string]int) {
		return s.connectFromNodeClient(t, answer, 443, name, flowpb.TrafficDirection_EGRESS)
	}
	_, vb := connect("")
	t.Logf("connect to %s:443 before resolving %s: verdicts %v", answer, name, vb)
	if !deniedOnly(vb) {
		errorf(t, "before %s was resolved, connections to %s:443: %v; want denied by policy only", name, answer, vb)
	}
	ip, va := connect(name)
	t.Logf("connect after resolving %s through the cache (answer %s): verdicts %v", name, ip, va)
	if ip != answer {
		errorf(t, "%s resolved to %q through the cache under the policy, want %s", name, ip, answer)
	}
	if va[forwarded] == 0 || va[denied] > 0 {
		errorf(t, "after %s was resolved, connections to %s:443: %v; want forwarded, none denied", name, answer, va)
	}
}

// Hubble's verdicts on a connection's packets, as connectFromNodeClient
// counts them.
const (
	denied    = "DROPPED POLICY_DENIED"
	forwarded = "FORWARDED DROP_REASON_UNKNOWN"
)

// deniedOnly: some packets denied by policy, none forwarded.
func deniedOnly(v map[string]int) bool { return v[denied] > 0 && v[forwarded] == 0 }

// connectFromNodeClient connects from the Node.js client to addr:port
// (resolving name first when given) and returns the address it connected
// to and the verdicts Hubble gave the connection's packets in direction,
// as "VERDICT DROP_REASON" -> count.
func (s *suite) connectFromNodeClient(t *testing.T, addr string, port int, name string, direction flowpb.TrafficDirection) (string, map[string]int) {
	ctx := t.Context()
	pod := libClients[0].pod // Node.js
	args := []string{"node", "-e", connectJS, addr, fmt.Sprint(port)}
	if name != "" {
		args = append(args, name)
	}
	start := time.Now()
	out, err := s.cluster.Exec(ctx, "default", pod, args...)
	if err != nil {
		fatalf(t, "node in %s: %v: %s", pod, err, out)
	}
	time.Sleep(2 * time.Second)
	flows, err := s.flowsTo(ctx, addr, port, time.Since(start)+time.Second)
	if err != nil {
		fatal(t, err)
	}
	v := map[string]int{}
	for _, f := range flows {
		if f.GetSource().GetPodName() == pod && f.GetTrafficDirection() == direction {
			v[f.GetVerdict().String()+" "+f.GetDropReasonDesc().String()]++
		}
	}
	return strings.TrimSpace(out), v
}

// cachePolicies: with manifests/components/network-policy, the cache pods'
// policy is enforced: a client reaching a cache pod's health port (allowed
// from the node only) is denied by policy, while DNS through the cache
// keeps passing verify.
func (s *suite) cachePolicies(t *testing.T) {
	if !s.networkPolicy {
		t.Skip("the network-policy component is not installed (LAB_POLICY=on installs it)")
	}
	// The clients' egress is open here: the cache's ingress policy decides.
	pods := s.cacheObjects(t)
	if len(pods) == 0 || pods[0].Status.PodIP == "" {
		fatalf(t, "no cache pod with an address: %v", pods)
	}
	ip := pods[0].Status.PodIP
	_, v := s.connectFromNodeClient(t, ip, 8080, "", flowpb.TrafficDirection_INGRESS)
	t.Logf("client -> cache pod %s:8080 (health, allowed from the node only): verdicts %v", ip, v)
	if !deniedOnly(v) {
		errorf(t, "client -> cache pod %s:8080: %v; want denied by the cache's ingress policy", ip, v)
	}
	s.verifyPasses(t)
}

// flowsTo reads Hubble's flows to ip:port over the last since.
func (s *suite) flowsTo(ctx context.Context, ip string, port int, since time.Duration) ([]*flowpb.Flow, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resps, err := verify.Flows(ctx, s.cluster.HubbleServer(), since, []*flowpb.FlowFilter{{DestinationIp: []string{ip}, DestinationPort: []string{fmt.Sprint(port)}}})
	out := make([]*flowpb.Flow, 0, len(resps))
	for _, r := range resps {
		out = append(out, r.GetFlow())
	}
	return out, err
}
