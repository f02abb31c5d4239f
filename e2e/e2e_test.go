//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/lrpdns/lrpdns/cmd/lrpdns/app"
	"github.com/lrpdns/lrpdns/e2e/judge"
	"github.com/lrpdns/lrpdns/pkg/lrp"
	"github.com/lrpdns/lrpdns/pkg/verify"
)

const (
	clientPod = "lrpdns-e2e-client"
	keptPod   = "lrpdns-e2e-kept"
)

// libClient is a resolver library as a client, in its own pod, with its
// script from e2e/clients in a ConfigMap: real resolvers next to the
// probe's kinds, since their socket reuse is what socket LB acts on.
type libClient struct {
	kind, pod, image string
	idle             []string // the container's command: a process to exec into
	run              []string // the script's command line, before the common flags
}

const (
	clientsConfigMap = "lrpdns-e2e-clients"
	clientsDir       = "/etc/lrpdns-e2e"
)

var libClients = []libClient{
	// c-ares keeps its UDP socket only while a query is outstanding on it:
	// four lookups side by side are a busy service.
	{kind: "node.js", pod: "lrpdns-e2e-node-client", image: cmp.Or(os.Getenv("LRPDNS_E2E_NODE_CLIENT_IMAGE"), "docker.io/library/node:20-bookworm-slim"),
		idle: []string{"node", "-e", "setInterval(() => {}, 3600e3)"},
		run:  []string{"node", clientsDir + "/resolve.js", "--inflight", "4", "--interval", "20ms"}},
	// glibc's resolver: a new socket per lookup, its own timeout and retry.
	{kind: "glibc", pod: "lrpdns-e2e-glibc-client", image: cmp.Or(os.Getenv("LRPDNS_E2E_GLIBC_CLIENT_IMAGE"), "docker.io/library/debian:bookworm-slim"),
		idle: []string{"sleep", "infinity"},
		run:  []string{"sh", clientsDir + "/getent.sh", "--interval", "0.02"}},
}

//go:embed clients/resolve.js
var resolveJS string

//go:embed clients/getent.sh
var getentSh string

// probeResult is a client's report: `lrpdns probe`, resolve.js and
// getent.sh print the same (e2e/judge.Report).
type probeResult = judge.Report

type suite struct {
	cluster Cluster
	// controlRunning: a negative control is running; its failures are
	// expected.
	controlRunning bool
	c              client.Client
	names          lrp.Names
	// mix is the probe's names with the answers they must get.
	mix []string
	// kubeDNSv6 is kube-dns's IPv6 ClusterIP on a dual-stack cluster.
	kubeDNSv6 string
	// nodes are the cluster's nodes, sorted; clients maps each to the probe
	// client pod that runs there (the first node's is clientPod).
	nodes   []string
	clients map[string]string
	// kept maps each node to the pod of its clients that keep a socket.
	kept map[string]string
	// clusterDNS is the address kubelets give pods as their resolver when
	// it is not kube-dns's ClusterIP (LRPDNS_E2E_CLUSTER_DNS, such as
	// 169.254.20.10): clients reach the cache through its address policy.
	clusterDNS string
	// networkPolicy: manifests/components/network-policy is installed
	// (LRPDNS_E2E_NETWORK_POLICY).
	networkPolicy bool
	// clientsBehindPolicy: after the policy checks, the clients stay behind
	// docs/install.md's toFQDNs client policy (LRPDNS_E2E_CLIENT_POLICY),
	// which makes their egress default-deny.
	clientsBehindPolicy bool
	// socketLBInPods: cilium-config has socket load balancing in pod
	// namespaces (kube-proxy replacement without
	// bpf-lb-sock-hostns-only), which translates a socket at connect().
	socketLBInPods bool
}

func TestE2E(t *testing.T) {
	if os.Getenv("LRPDNS_E2E_SUITE") == "fallback" {
		t.Skip("LRPDNS_E2E_SUITE=fallback: only TestCiliumFallback runs")
	}
	s := newSuite(t)
	if classic := os.Getenv("LRPDNS_E2E_MIGRATE_FROM"); classic != "" {
		t.Run("migration from classic NodeLocal DNSCache as docs/install.md gives it", func(t *testing.T) { s.migrate(t, classic) })
	}
	t.Run("policy is in place", s.policyInPlace)
	t.Run("names resolve through the cache", s.resolve)
	t.Run("the cache runs as shipped: its user, no capabilities, read-only root, under its memory limit", s.hardening)
	t.Run("verify passes on Hubble flows", s.verifyFlows)
	t.Run("each node's client is answered by its own node's cache", s.nodeLocal)
	t.Run("IPv6 clients are answered by the cache and verify passes for them", s.ipv6Clients)
	t.Run("the install's commands as the docs give them; lrpdns verify alone passes", s.verifyCLI)
	t.Run("docs/verify.md's other commands as written", s.verifyDocs)
	t.Run("a policy removed by hand shows as bypass and is restored", s.bypassReported)
	t.Run("a client policy that allows kube-dns only fails verify with the drop", s.clientPolicy)
	t.Run("docs/install.md's toFQDNs client policy allows an external name once resolved through the cache", s.fqdnPolicy)
	t.Run("the network-policy component's policies are enforced and DNS passes them", s.cachePolicies)
	t.Run("the clients stay behind docs/install.md's toFQDNs policy from here on", s.keepClientPolicy)
	// The scenarios below run under continuous queries; each prints
	// "<scenario> (<client kind>): N sent, N answered, N failed".
	t.Run("kube-dns-upstream deleted by hand", s.upstreamDeleted)
	t.Run("DaemonSet deleted with --cascade=orphan and re-applied", s.orphaned)
	t.Run("rollout restart", s.rollout)
	t.Run("a node's cache drained", s.drainNode)
	t.Run("cache port change", s.portChange)
	if os.Getenv("LRPDNS_E2E_CONTROLS") != "0" {
		t.Run("negative controls: a broken cache fails the suite", s.negativeControls)
	}
	t.Run("cache DaemonSet deleted", s.deleteCache)
	t.Run("uninstall as installed (kubectl delete -k or -f, or helm uninstall)", s.uninstall)
}

// newSuite reaches the cluster the environment names (or skips), starts the
// client pods and learns kube-dns's addresses.
func newSuite(t *testing.T) *suite {
	cluster, err := fromEnv()
	if err != nil {
		t.Skip(err)
	}
	cfg, err := cluster.RESTConfig()
	if err != nil {
		fatal(t, err)
	}
	scheme, err := lrp.Scheme()
	if err != nil {
		fatal(t, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fatal(t, err)
	}
	s := &suite{cluster: cluster, c: c, names: lrp.DefaultNames()}
	if name := os.Getenv("LRPDNS_E2E_KUBE_DNS_SERVICE"); name != "" {
		s.names.KubeDNSService = name // kube-dns named otherwise (RKE2)
	}
	// Installed beside classic NodeLocal DNSCache: other names.
	s.names.DaemonSet = cmp.Or(os.Getenv("LRPDNS_E2E_DAEMONSET"), s.names.DaemonSet)
	s.names.UpstreamService = cmp.Or(os.Getenv("LRPDNS_E2E_UPSTREAM_SERVICE"), s.names.UpstreamService)
	t.Cleanup(func() { s.saveArtifacts(t) })
	s.startClient(t)
	s.mix = s.queryMix(t)
	s.kubeDNSv6 = s.ipv6ClusterIP(t)
	s.clusterDNS = os.Getenv("LRPDNS_E2E_CLUSTER_DNS")
	s.networkPolicy = os.Getenv("LRPDNS_E2E_NETWORK_POLICY") != ""
	s.clientsBehindPolicy = os.Getenv("LRPDNS_E2E_CLIENT_POLICY") != ""
	s.socketLBInPods = s.readSocketLBInPods(t)
	return s
}

// readSocketLBInPods reads kube-system/cilium-config as the controller
// does (lrp.SocketLBInPods).
func (s *suite) readSocketLBInPods(t *testing.T) bool {
	cm := &corev1.ConfigMap{}
	if err := s.c.Get(t.Context(), client.ObjectKey{Namespace: "kube-system", Name: "cilium-config"}, cm); err != nil {
		t.Logf("cilium-config: %v: taking socket load balancing in pods as off", err)
		return false
	}
	on := lrp.SocketLBInPods(cm.Data)
	t.Logf("cilium-config: kube-proxy-replacement=%q bpf-lb-sock=%q bpf-lb-sock-hostns-only=%q: socket load balancing in pods %v",
		cm.Data["kube-proxy-replacement"], cm.Data["bpf-lb-sock"], cm.Data["bpf-lb-sock-hostns-only"], on)
	return on
}

// queryMix is what every scenario asks, each with the answer it must get:
// cluster names (their ClusterIPs), a never-seen cluster name per round (a
// pod name CoreDNS answers with the address it spells: always a cache miss),
// an external name and a never-seen external name per round (the node
// resolver's answer, where the provider knows it:
// LRPDNS_E2E_EXTERNAL_ANSWER). The lab's node resolver refuses
// cluster names, so one sent the wrong way fails.
func (s *suite) queryMix(t *testing.T) []string {
	mix := []string{"--fresh", "default.pod.cluster.local"}
	for _, key := range []client.ObjectKey{{Namespace: "default", Name: "kubernetes"}, {Namespace: s.names.Namespace, Name: s.names.KubeDNSService}} {
		svc := &corev1.Service{}
		if err := s.c.Get(t.Context(), key, svc); err != nil {
			fatal(t, err)
		}
		mix = append(mix, fmt.Sprintf("%s.%s.svc.cluster.local=%s", key.Name, key.Namespace, svc.Spec.ClusterIP))
	}
	// An external name, and a never-seen one each round (a miss to the
	// node's resolvers).
	// Where the node's resolver is the suite's own (e2e/noderesolver), the
	// never-seen external names spell their answers: a cache that hands
	// one name's answer to another fails.
	external, fresh := "example.com", "example.com"
	if a := os.Getenv("LRPDNS_E2E_EXTERNAL_ANSWER"); a != "" {
		external += "=" + a
		fresh += "=spelled"
	}
	// Flags before names: the flag package stops at the first name.
	return append([]string{"--fresh-external", fresh}, append(mix, external)...)
}

// libResolve runs c's script in its pod.
func (s *suite) libResolve(ctx context.Context, c libClient, args ...string) (probeResult, error) {
	return s.runClient(ctx, c.pod, append(slices.Clone(c.run), args...))
}

// runClient runs argv (a client, its script or subcommand, then its flags)
// in pod with a run number of its own, and reads the report it prints.
func (s *suite) runClient(ctx context.Context, pod string, argv []string) (probeResult, error) {
	argv = slices.Concat(argv[:2], []string{"--run", strconv.Itoa(nextRun())}, argv[2:])
	out, err := s.cluster.Exec(ctx, "default", pod, argv...)
	var r probeResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		return r, errors.Join(err, fmt.Errorf("%s output %q: %w", argv[0], out, jerr))
	}
	if err != nil && r.Failed > 0 && exitCode(err) == 1 {
		return r, nil // exit 1: some queries failed, which the report says
	}
	return r, err
}

func (s *suite) startClient(t *testing.T) {
	ctx := t.Context()
	scripts := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: clientsConfigMap, Namespace: "default"},
		Data:       map[string]string{"resolve.js": resolveJS, "getent.sh": getentSh},
	}
	if err := s.c.Create(ctx, scripts); err != nil && !apierrors.IsAlreadyExists(err) {
		fatal(t, err)
	}
	nodes := &corev1.NodeList{}
	if err := s.c.List(ctx, nodes); err != nil {
		fatal(t, err)
	}
	// Clients run where workloads do: not on a control plane that keeps its
	// NoSchedule taint, when there are other nodes (kind's workers).
	for _, n := range nodes.Items {
		if len(nodes.Items) > 1 && slices.ContainsFunc(n.Spec.Taints, func(tn corev1.Taint) bool {
			return tn.Key == "node-role.kubernetes.io/control-plane" && tn.Effect == corev1.TaintEffectNoSchedule
		}) {
			continue
		}
		s.nodes = append(s.nodes, n.Name)
	}
	slices.Sort(s.nodes)
	// A probe client on every node, pinned there; the first node's is
	// clientPod, where the resolver libraries run too. Beside each, a pod
	// for the clients that keep their socket (keptPod): socket load
	// balancing translates at connect() only, so after a redirect comes
	// back such a socket stays where it was, and the scenario's own flows
	// are judged without them.
	s.clients, s.kept = map[string]string{}, map[string]string{}
	var pods []string
	for i, node := range s.nodes {
		for _, name := range []string{clientPod, keptPod} {
			if i > 0 {
				name += "-" + node
			}
			if strings.HasPrefix(name, keptPod) {
				s.kept[node] = name
			} else {
				s.clients[node] = name
			}
			pods = append(pods, name)
			probePod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "lrpdns-e2e-client"}},
				Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
					Name: "client", Image: s.cluster.Image(), ImagePullPolicy: corev1.PullIfNotPresent,
					// Background DNS traffic, and a process to exec into.
					Args: []string{"probe", "--duration", "24h", "--interval", "1s", "kubernetes.default.svc.cluster.local"},
				}}},
			}
			if err := s.c.Create(ctx, probePod); err != nil && !apierrors.IsAlreadyExists(err) {
				fatal(t, err)
			}
		}
	}
	for _, c := range libClients {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: c.pod, Namespace: "default", Labels: map[string]string{"app": "lrpdns-e2e-client"}},
			Spec: corev1.PodSpec{
				NodeName: s.nodes[0],
				Containers: []corev1.Container{{
					Name: "client", Image: c.image, ImagePullPolicy: corev1.PullIfNotPresent, Command: c.idle,
					VolumeMounts: []corev1.VolumeMount{{Name: "scripts", MountPath: clientsDir, ReadOnly: true}},
				}},
				Volumes: []corev1.Volume{{Name: "scripts", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: clientsConfigMap},
				}}}},
			},
		}
		if err := s.c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
			fatal(t, err)
		}
		pods = append(pods, c.pod)
	}
	for _, name := range pods {
		waitFor(t, 2*time.Minute, "the client pod "+name+" to run", func() bool {
			p := &corev1.Pod{}
			return s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, p) == nil && p.Status.Phase == corev1.PodRunning
		})
	}
}

func (s *suite) probe(ctx context.Context, args ...string) (probeResult, error) {
	return s.probeFrom(ctx, clientPod, args...)
}

// probeEveryNode runs lrpdns probe from every node's client in turn, for
// the flows a check of every node needs; failures are logged, not judged.
func (s *suite) probeEveryNode(t *testing.T, args ...string) {
	t.Helper()
	for _, node := range s.nodes {
		if _, err := s.probeFrom(t.Context(), s.clients[node], args...); err != nil {
			t.Logf("probe on %s: %v", node, err)
		}
	}
}

// probeFrom runs lrpdns probe in the client pod named pod.
func (s *suite) probeFrom(ctx context.Context, pod string, args ...string) (probeResult, error) {
	return s.runClient(ctx, pod, append([]string{"/lrpdns", "probe"}, args...))
}

func (s *suite) policyInPlace(t *testing.T) {
	waitFor(t, 2*time.Minute, "the CiliumLocalRedirectPolicy", func() bool {
		return s.c.Get(t.Context(), client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, &ciliumv2.CiliumLocalRedirectPolicy{}) == nil
	})
}

func (s *suite) resolve(t *testing.T) {
	r, err := s.probe(t.Context(), append([]string{"--count", "40", "--interval", "50ms"}, s.mix...)...)
	if err != nil || r.Answered != r.Sent || r.Sent != 40 {
		errorf(t, "%v: %+v, %v", s.mix, r, err)
	}
	if s.clusterDNS != "" && r.Server != net.JoinHostPort(s.clusterDNS, "53") {
		errorf(t, "the client asked %s, want its resolv.conf's %s", r.Server, s.clusterDNS)
	}
	// A second, TCP run exercises the redirect's TCP port.
	r, err = s.probe(t.Context(), append([]string{"--tcp", "--count", "20", "--interval", "50ms"}, s.mix...)...)
	if err != nil || r.Answered != r.Sent || r.Sent != 20 {
		errorf(t, "%v over TCP: %+v, %v", s.mix, r, err)
	}
}

// verifyConfig is what lrpdns verify reads from the cluster (the policy's
// backend selector and port, kube-dns's selector and target ports), with
// the node's resolvers when the provider knows them
// (LRPDNS_E2E_NODE_RESOLVERS).
func (s *suite) verifyConfig(t *testing.T) (verify.Config, error) {
	names := verify.DefaultNames()
	names.KubeDNSService = s.names.KubeDNSService
	c, _, err := verify.Discover(t.Context(), s.c, names)
	if err != nil {
		return c, err
	}
	for _, a := range strings.Split(os.Getenv("LRPDNS_E2E_NODE_RESOLVERS"), ",") {
		if a != "" {
			c.NodeResolvers = append(c.NodeResolvers, netip.MustParseAddr(a))
		}
	}
	return c, nil
}

// verify evaluates the last since of flows; a Hubble read error is an error,
// never an empty result that a check could pass on.
func (s *suite) verify(t *testing.T, since time.Duration) (verify.Report, error) {
	return s.verifyClients(t, since, flowpb.IPVersion_IP_NOT_USED)
}

// verifyClients is verify judging only clients' queries of one IP version
// (lrpdns verify --client-ip-version).
func (s *suite) verifyClients(t *testing.T, since time.Duration, v flowpb.IPVersion) (verify.Report, error) {
	return s.verifyClientsWithout(t, since, v, nil)
}

// verifyClientsWithout is verifyClients on the flows skip does not take
// away (nil: all of them).
func (s *suite) verifyClientsWithout(t *testing.T, since time.Duration, v flowpb.IPVersion, skip func(*flowpb.Flow) bool) (verify.Report, error) {
	c, err := s.verifyConfig(t)
	if err != nil {
		return verify.Report{}, err
	}
	c.ClientIPVersion = v
	flows, err := verify.FromServer(t.Context(), s.cluster.HubbleServer(), since, c)
	if err != nil {
		return verify.Report{}, fmt.Errorf("failed to read flows from Hubble: %w", err)
	}
	if skip != nil {
		kept := flows[:0]
		for _, f := range flows {
			if !skip(f.GetFlow()) {
				kept = append(kept, f)
			}
		}
		if n := len(flows) - len(kept); n > 0 {
			t.Logf("verify: %d of %d flows left out", n, len(flows))
		}
		flows = kept
	}
	rep, err := verify.Evaluate(t.Context(), c, flows)
	if err != nil {
		return verify.Report{}, fmt.Errorf("failed to evaluate flows: %w", err)
	}
	return rep, nil
}

func report(results verify.Report) string {
	var b strings.Builder
	_ = verify.WriteText(&b, results)
	return b.String()
}

func (s *suite) verifyFlows(t *testing.T) {
	s.verifyPasses(t)
}

// migrate takes a cluster from classic NodeLocal DNSCache (the objects in
// the file classic, running, its node-cache on s.clusterDNS) to lrpdns, in
// docs/install.md's steps, under continuous queries; then undoes it
// (classic back, lrpdns removed) and does it again, as the guide says a user
// can. Nothing may fail in any phase.
func (s *suite) migrate(t *testing.T, classic string) {
	ctx := t.Context()
	classicPods := func() int {
		pods := &corev1.PodList{}
		if err := s.c.List(ctx, pods, client.InNamespace(s.names.Namespace), client.MatchingLabels{"k8s-app": "node-local-dns"}); err != nil {
			fatal(t, err)
		}
		return len(pods.Items)
	}
	if classicPods() == 0 {
		fatal(t, "no classic node-local-dns pod runs: nothing to migrate from")
	}
	kubectl := func(args ...string) {
		t.Helper()
		t.Logf("+ kubectl %s", strings.Join(args, " "))
		if out, err := s.cluster.Kubectl(ctx, args...); err != nil {
			fatalf(t, "kubectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	addressKey := client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.AddressPolicy(netip.MustParseAddr(s.clusterDNS))}
	// Before: the client's resolv.conf names the address, classic answers
	// there, and no lrpdns pod exists to answer instead.
	if n := len(s.cachePods(t)); n != 0 {
		fatalf(t, "%d lrpdns cache pods run before the migration; want none", n)
	}
	s.resolve(t)
	t.Logf("before the migration: classic answered the client's queries to %s (UDP and TCP)", s.clusterDNS)
	// Steps 1 and 2: lrpdns beside classic, then wait for it rolled out,
	// for both policies and for lrpdns verify.
	install := func() {
		kubectl("apply", "-k", s.cluster.Kustomization())
		kubectl("-n", s.names.Namespace, "rollout", "status", "ds/"+s.names.DaemonSet, "--timeout=180s")
		s.waitRedirect(t, nil)
		waitFor(t, time.Minute, "the address policy", func() bool {
			return s.c.Get(ctx, addressKey, &ciliumv2.CiliumLocalRedirectPolicy{}) == nil
		})
		// While classic runs, its node-cache (hostNetwork) forwards to
		// CoreDNS and health-checks it: a bypass from the host, as the guide
		// says; every other flow must pass verify.
		s.verifyPassesWithout(t, flowpb.IPVersion_IP_NOT_USED, verify.FromNode)
	}
	// Step 3: classic's objects deleted; then lrpdns verify on every flow.
	removeAndVerify := func() {
		kubectl("delete", "-f", classic, "--wait=true")
		waitFor(t, 2*time.Minute, "classic's pods to go", func() bool { return classicPods() == 0 })
		s.verifyPasses(t)
	}
	s.underLoad(t, "migration", "migration from classic NodeLocal DNSCache", 240*time.Second, func(*judge.Evidence) {
		install()
		removeAndVerify()
	})
	// Undo: classic first, with the readiness probe its manifest lacks (a
	// pod is Ready before its node-cache serves), then lrpdns away; the
	// address is classic's again.
	s.underLoad(t, "migration undone", "", 150*time.Second, func(*judge.Evidence) {
		kubectl("apply", "-f", classic)
		kubectl("-n", s.names.Namespace, "patch", "ds", "node-local-dns", "--type=json",
			`-p=[{"op":"add","path":"/spec/template/spec/containers/0/readinessProbe","value":{"httpGet":{"host":"`+s.clusterDNS+`","path":"/health","port":8080}}}]`)
		kubectl("-n", s.names.Namespace, "rollout", "status", "ds/node-local-dns", "--timeout=180s")
		kubectl("delete", "-k", s.cluster.Kustomization(), "--wait=true")
		waitFor(t, 2*time.Minute, "lrpdns's policies and pods to go", func() bool {
			return apierrors.IsNotFound(s.c.Get(ctx, addressKey, &ciliumv2.CiliumLocalRedirectPolicy{})) && len(s.cachePods(t)) == 0
		})
	})
	s.underLoad(t, "migration", "migration from classic NodeLocal DNSCache, again", 240*time.Second, func(*judge.Evidence) {
		install()
		removeAndVerify()
	})
}

// ipv6ClusterIP is kube-dns's IPv6 ClusterIP, or "". With
// LRPDNS_E2E_DUAL_STACK set the cluster is dual-stack and kube-dns must
// have one.
func (s *suite) ipv6ClusterIP(t *testing.T) string {
	svc := &corev1.Service{}
	if err := s.c.Get(t.Context(), client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.KubeDNSService}, svc); err != nil {
		fatal(t, err)
	}
	for _, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
			t.Logf("kube-dns ClusterIPs %v: IPv6 clients query %s", svc.Spec.ClusterIPs, ip)
			return ip
		}
	}
	if os.Getenv("LRPDNS_E2E_DUAL_STACK") != "" {
		fatalf(t, "LRPDNS_E2E_DUAL_STACK is set, but Service %s has no IPv6 ClusterIP (ClusterIPs %v, ipFamilyPolicy %v)",
			s.names.KubeDNSService, svc.Spec.ClusterIPs, svc.Spec.IPFamilyPolicy)
	}
	return ""
}

// ipv6Clients queries kube-dns's IPv6 ClusterIP over UDP and TCP, every
// answer checked, then requires lrpdns verify to pass on IPv6 clients'
// queries alone: delivered to the cache pod, none to CoreDNS directly.
func (s *suite) ipv6Clients(t *testing.T) {
	if s.kubeDNSv6 == "" {
		t.Skip("kube-dns has no IPv6 ClusterIP: not a dual-stack cluster (LRPDNS_E2E_DUAL_STACK unset)")
	}
	for _, tcp := range []bool{false, true} {
		args := []string{"--server", s.kubeDNSv6, "--count", "40", "--interval", "20ms"}
		if tcp {
			args = append(args, "--tcp")
		}
		r, err := s.probe(t.Context(), append(args, s.mix...)...)
		if err != nil || r.Sent != 40 || r.Answered != r.Sent {
			errorf(t, "probe %v: %+v, %v; want 40 answered", args, r, err)
		}
	}
	s.verifyPassesOver(t, flowpb.IPVersion_IPv6)
}

// bypassReported stops the controller, deletes the policy by hand, and
// expects verify to see clients reach CoreDNS directly; then the controller
// comes back and restores the policy.
func (s *suite) bypassReported(t *testing.T) {
	if s.clusterDNS != "" {
		t.Skipf("clients ask %s, which only a redirect answers: without kube-dns's policy they do not bypass the cache", s.clusterDNS)
	}
	ctx := t.Context()
	s.scaleController(t, 0)
	p := &ciliumv2.CiliumLocalRedirectPolicy{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, p); err != nil {
		fatal(t, err)
	}
	if err := s.c.Delete(ctx, p); err != nil {
		fatal(t, err)
	}
	removed := time.Now()
	time.Sleep(3 * time.Second) // let the datapath drop the redirect
	if r, err := s.probe(ctx, "--count", "10", "--interval", "50ms", "kubernetes.default.svc.cluster.local"); err != nil || r.Answered != r.Sent {
		errorf(t, "without the policy: %+v, %v; want every query answered, by CoreDNS", r, err)
	}
	time.Sleep(2 * time.Second)
	results, err := s.verify(t, time.Since(removed)+time.Second)
	if err != nil {
		fatal(t, err)
	}
	t.Logf("lrpdns verify without the policy:\n%s", report(results))
	found := false
	for _, n := range results.Nodes {
		for _, r := range n.Checks {
			if r.Name == "no-bypass" && r.Status == verify.Fail {
				found = true
			}
		}
	}
	if !found || results.Passed() {
		errorf(t, "without the policy: no node has no-bypass FAIL, or verify passed:\n%s", report(results))
	}

	s.scaleController(t, 2)
	restoreStart := time.Now()
	waitFor(t, 3*time.Minute, "the policy to be restored", func() bool {
		return s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, &ciliumv2.CiliumLocalRedirectPolicy{}) == nil
	})
	t.Logf("controller back: policy restored %v after scaling it up", time.Since(restoreStart).Round(time.Second))
	waitFor(t, time.Minute, "verify to pass again", func() bool {
		s.probeEveryNode(t, append([]string{"--count", "10", "--interval", "20ms"}, s.mix...)...)
		results, err := s.verify(t, 10*time.Second)
		if err != nil {
			t.Logf("verify: %v", err)
			return false
		}
		return results.Passed()
	}, func() { t.Logf("last lrpdns verify:\n%s", report(results)) })
}

// scaleController sets the controller's replicas; at 0 it waits until no
// controller pod is left.
func (s *suite) scaleController(t *testing.T, n int32) {
	t.Helper()
	ctx := t.Context()
	d := &appsv1.Deployment{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: "lrpdns-controller"}, d); err != nil {
		fatal(t, err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = &n
	if err := s.c.Patch(ctx, d, patch); err != nil {
		fatal(t, err)
	}
	if n == 0 {
		waitFor(t, 2*time.Minute, "the controller to stop", func() bool {
			pods := &corev1.PodList{}
			return s.c.List(ctx, pods, client.InNamespace(s.names.Namespace), client.MatchingLabels{"app.kubernetes.io/name": "lrpdns-controller"}) == nil && len(pods.Items) == 0
		})
	}
}

// clientPolicyYAML is the client's egress policy: DNS to kube-dns, and,
// with allowCache, to the cache pods the redirect sends it to, whose
// k8s-app label is cacheApp (the DaemonSet's name in every install lrpdns
// ships).
func clientPolicyYAML(allowCache bool, cacheApp string) string {
	y := `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: lrpdns-e2e-client-dns
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      app: lrpdns-e2e-client
  egress:
  - toEndpoints:
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: kube-system
        k8s-app: kube-dns
    toPorts:
    - ports:
      - port: "53"
        protocol: ANY
`
	if allowCache {
		y += `  - toEndpoints:
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: kube-system
        k8s-app: ` + cacheApp + `
    toPorts:
    - ports:
      - port: "5353"
        protocol: ANY
`
	}
	return y
}

// removeClientPolicy deletes a policy the clients were behind and gives the
// agent the time it takes to compute the change, as after applying one:
// the next scenario's clients must not meet a datapath half way between
// (an L7 DNS rule puts Cilium's DNS proxy on their path, and the proxy
// refuses what no rule allows).
func (s *suite) removeClientPolicy(u client.Object) {
	_ = s.c.Delete(context.Background(), u)
	time.Sleep(3 * time.Second)
}

// applyYAML applies the object y describes, as the suite's field owner.
func (s *suite) applyYAML(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		fatal(t, err)
	}
	if err := s.c.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("lrpdns-e2e"), client.ForceOwnership); err != nil {
		fatal(t, err)
	}
	return u
}

// clientPolicy puts the client behind an egress policy that allows DNS to
// kube-dns only, the common mistake: redirected to the cache pod, its
// queries are denied. verify must fail with the policy drop and the fix;
// allowing the cache pods makes it pass.
func (s *suite) clientPolicy(t *testing.T) {
	ctx := t.Context()
	apply := func(allowCache bool) { s.applyYAML(t, clientPolicyYAML(allowCache, s.names.DaemonSet)) }
	t.Cleanup(func() { s.removeClientPolicy(ciliumNetworkPolicy("default", "lrpdns-e2e-client-dns")) })
	apply(false)
	time.Sleep(3 * time.Second) // the agent computes the policy
	start := time.Now()
	r, _ := s.probe(ctx, "--count", "10", "--interval", "50ms", "--timeout", "300ms", "kubernetes.default.svc.cluster.local")
	t.Logf("queries under the kube-dns-only policy: %d sent, %d answered, %d failed", r.Sent, r.Answered, r.Failed)
	time.Sleep(2 * time.Second)
	rep, err := s.verify(t, time.Since(start)+time.Second)
	if err != nil {
		fatal(t, err)
	}
	text := report(rep)
	t.Logf("lrpdns verify with the kube-dns-only client policy:\n%s", text)
	if rep.Passed() {
		errorf(t, "verify passed with the client's queries denied")
	}
	// Cilium records the denial as a drop event ("Policy denied DROPPED")
	// or a policy verdict ("EGRESS DENIED"); either is the evidence.
	if !strings.Contains(text, "Policy denied DROPPED") && !strings.Contains(text, "EGRESS DENIED") {
		errorf(t, "verify report shows no denied query as evidence")
	}
	for _, want := range []string{"(POLICY_DENIED)", "egress policy allows kube-dns but not the cache pods"} {
		if !strings.Contains(text, want) {
			errorf(t, "verify report lacks %q", want)
		}
	}

	apply(true)
	time.Sleep(3 * time.Second)
	s.verifyPasses(t)
	t.Logf("allowing the cache pods too: verify passes")
}

func (s *suite) dsKey() client.ObjectKey {
	return client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.DaemonSet}
}

func (s *suite) policyKey() client.ObjectKey {
	return client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}
}

// rolledOut reports whether the cache DaemonSet runs its current template,
// available, on every node.
func (s *suite) rolledOut(ctx context.Context) bool {
	cur := &appsv1.DaemonSet{}
	return s.c.Get(ctx, s.dsKey(), cur) == nil && cur.Status.ObservedGeneration >= cur.Generation &&
		cur.Status.UpdatedNumberScheduled == cur.Status.DesiredNumberScheduled &&
		cur.Status.NumberAvailable == cur.Status.DesiredNumberScheduled && cur.Status.DesiredNumberScheduled > 0
}

// cacheObjects are the cache's pods, terminating ones too.
func (s *suite) cacheObjects(t *testing.T) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := s.c.List(t.Context(), pods, client.InNamespace(s.names.Namespace), client.MatchingLabels{"k8s-app": s.names.DaemonSet}); err != nil {
		fatal(t, err)
	}
	return pods.Items
}

// cachePods are the cache's pods that are not terminating, by name, with
// their UIDs.
func (s *suite) cachePods(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range s.cacheObjects(t) {
		if p.DeletionTimestamp == nil {
			out[p.Name] = string(p.UID)
		}
	}
	return out
}

// waitRedirect waits for the policy (matching ok, if given) and for the
// rollout, then for Cilium to have it in the datapath, as seen by a query
// that reaches a cache: verify is not needed for that, a moment is.
func (s *suite) waitRedirect(t *testing.T, ok func(*ciliumv2.CiliumLocalRedirectPolicy) bool) *ciliumv2.CiliumLocalRedirectPolicy {
	t.Helper()
	p := &ciliumv2.CiliumLocalRedirectPolicy{}
	waitFor(t, 3*time.Minute, "the redirect", func() bool {
		return s.c.Get(t.Context(), s.policyKey(), p) == nil && (ok == nil || ok(p)) && s.rolledOut(t.Context())
	})
	return p
}

func (s *suite) rollout(t *testing.T) {
	ctx := t.Context()
	old := &ciliumv2.CiliumLocalRedirectPolicy{}
	if err := s.c.Get(ctx, s.policyKey(), old); err != nil {
		fatal(t, err)
	}
	s.underLoad(t, "rollout restart", "", 60*time.Second, func(*judge.Evidence) {
		ds := &appsv1.DaemonSet{}
		if err := s.c.Get(ctx, s.dsKey(), ds); err != nil {
			fatal(t, err)
		}
		patch := client.MergeFrom(ds.DeepCopy())
		if ds.Spec.Template.Annotations == nil {
			ds.Spec.Template.Annotations = map[string]string{}
		}
		ds.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] = time.Now().Format(time.RFC3339)
		if err := s.c.Patch(ctx, ds, patch); err != nil {
			fatal(t, err)
		}
		time.Sleep(2 * time.Second)
		waitFor(t, 3*time.Minute, "the rollout to finish", func() bool { return s.rolledOut(ctx) })
	})
	// The redirect outlived the rollout: a controller that withdrew and
	// re-created it on every rollout would send clients to CoreDNS for a
	// while, and pass on answers alone.
	now := &ciliumv2.CiliumLocalRedirectPolicy{}
	if err := s.c.Get(ctx, s.policyKey(), now); err != nil || now.UID != old.UID {
		errorf(t, "the policy after the rollout: UID %s (%v), want the same policy, UID %s", now.UID, err, old.UID)
	}
}

// portChange moves the cache from 5353 to 5354. The redirect's backend port
// is immutable: the controller withdraws the policy, the DaemonSet rolls,
// and the policy comes back with 5354 once no pod on 5353 is left.
func (s *suite) portChange(t *testing.T) {
	ctx := t.Context()
	old := &ciliumv2.CiliumLocalRedirectPolicy{}
	if err := s.c.Get(ctx, s.policyKey(), old); err != nil {
		fatal(t, err)
	}
	s.underLoad(t, "cache port 5353 -> 5354", "", 90*time.Second, func(*judge.Evidence) {
		ds := &appsv1.DaemonSet{}
		if err := s.c.Get(ctx, s.dsKey(), ds); err != nil {
			fatal(t, err)
		}
		c := &ds.Spec.Template.Spec.Containers[0]
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--port=") {
				c.Args[i] = "--port=5354"
			}
		}
		for i := range c.Ports {
			if c.Ports[i].ContainerPort == 5353 {
				c.Ports[i].ContainerPort = 5354
			}
		}
		// As docs/install.md says: the component's policy, and every
		// client policy, let the new port in first.
		if s.networkPolicy {
			s.patchAsDocs(t, ciliumNetworkPolicy(s.names.Namespace, s.names.DaemonSet), cachePolicyDoc)
		}
		if s.clientsBehindPolicy {
			s.patchAsDocs(t, ciliumNetworkPolicy("default", fqdnPolicyName), clientPolicyDoc)
		}
		if err := s.c.Update(ctx, ds); err != nil {
			fatal(t, err)
		}
		p := s.waitRedirect(t, func(p *ciliumv2.CiliumLocalRedirectPolicy) bool {
			return p.UID != old.UID && p.Spec.RedirectBackend.ToPorts[0].Port == "5354"
		})
		t.Logf("policy re-created with backend %s/%s", p.Spec.RedirectBackend.ToPorts[0].Port, p.Spec.RedirectBackend.ToPorts[0].Protocol)
	})
	// And the queries reach a cache on 5354 again, not only kube-dns.
	s.verifyPasses(t)
}

// ciliumNetworkPolicy names a CiliumNetworkPolicy, to patch or delete.
func ciliumNetworkPolicy(namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("cilium.io/v2")
	u.SetKind("CiliumNetworkPolicy")
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// patchAsDocs applies to obj docs/install.md's `kubectl patch` of
// docObject, as written, and gives the agents 2 s to compute the policy.
func (s *suite) patchAsDocs(t *testing.T, obj client.Object, docObject string) {
	patch := docPatch(docObject)
	if patch == "" {
		fatalf(t, "docs/install.md has no kubectl patch for %s", docObject)
	}
	if err := s.c.Patch(t.Context(), obj, client.RawPatch(types.JSONPatchType, []byte(patch))); err != nil {
		fatalf(t, "%s/%s: docs/install.md's patch of %s: %v", obj.GetNamespace(), obj.GetName(), docObject, err)
	}
	time.Sleep(2 * time.Second)
}

// verifyCLI runs the commands README and docs/install.md give after an
// install, as written: `kubectl describe ds` shows the controller's Event,
// `kubectl get ciliumlocalredirectpolicy` finds the policy, and `lrpdns
// verify` (with $KUBECONFIG, then with --kubeconfig FILE) passes through
// the same Run as the binary: it reads the policy, the cache and kube-dns
// from the cluster and reaches Hubble Relay by a port-forward through the
// API server. Its default window is five minutes, so a bypass earlier in
// the suite fails it too.
func (s *suite) verifyCLI(t *testing.T) {
	ns := s.names.Namespace
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", ns, "describe", "ds", s.names.DaemonSet}, lrp.ReasonCreated},
		{[]string{"-n", ns, "get", "ciliumlocalredirectpolicy", s.names.Policy}, s.names.Policy},
	} {
		out, err := s.cluster.Kubectl(t.Context(), c.args...)
		if err != nil || !strings.Contains(out, c.want) {
			errorf(t, "kubectl %s: %v; output lacks %q:\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	s.probeEveryNode(t, append([]string{"--count", "20", "--interval", "20ms"}, s.mix...)...)
	time.Sleep(500 * time.Millisecond)
	t.Setenv("KUBECONFIG", s.cluster.Kubeconfig())
	for _, args := range [][]string{{"verify"}, {"verify", "--kubeconfig", s.cluster.Kubeconfig()}} {
		var out, errOut bytes.Buffer
		err := app.Run(t.Context(), args, &out, &errOut)
		t.Logf("+ lrpdns %s\n%s%s", strings.Join(args, " "), errOut.String(), out.String())
		if err != nil {
			errorf(t, "lrpdns %s: %v", strings.Join(args, " "), err)
			continue
		}
		for _, want := range []string{"port-forward", "PASS"} {
			if !strings.Contains(errOut.String()+out.String(), want) {
				errorf(t, "lrpdns %s: output lacks %q", strings.Join(args, " "), want)
			}
		}
	}
}

// verifyDocs runs docs/verify.md's other two commands as written, in a
// shell, with the lrpdns and hubble binaries on PATH (LRPDNS_E2E_PATH):
// verify against Hubble Relay on localhost:4245 (a port-forward, the
// suite's own when nothing listens there yet), and `hubble observe` piped
// into `lrpdns verify --flows -`.
func (s *suite) verifyDocs(t *testing.T) {
	path := os.Getenv("LRPDNS_E2E_PATH")
	if path == "" {
		t.Skip("LRPDNS_E2E_PATH (the directories of lrpdns and hubble) is not set")
	}
	const relay = "127.0.0.1:4245"
	if !listening(relay) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() {
			_, _ = s.cluster.Kubectl(ctx, "-n", "kube-system", "port-forward", "svc/hubble-relay", "4245:80")
		}()
		waitFor(t, 30*time.Second, "kubectl port-forward svc/hubble-relay 4245:80", func() bool { return listening(relay) })
	}
	s.probeEveryNode(t, append([]string{"--count", "20", "--interval", "20ms"}, s.mix...)...)
	time.Sleep(500 * time.Millisecond)
	cmds, err := verifyDocCommands()
	if err != nil || len(cmds) != 3 {
		fatalf(t, "docs/verify.md's commands %q: %v", cmds, err)
	}
	pipe := strings.Replace(cmds[2], "~/.kube/config", s.cluster.Kubeconfig(), 1)
	for _, line := range []string{strings.Replace(cmds[1], "FILE", s.cluster.Kubeconfig(), 1), pipe} {
		start := time.Now()
		cmd := exec.CommandContext(t.Context(), "sh", "-c", line)
		cmd.Env = append(os.Environ(), "PATH="+path+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		t.Logf("+ %s (%v)\n%s", line, time.Since(start).Round(time.Second), out)
		if err != nil {
			errorf(t, "%s: %v", line, err)
		} else if !strings.Contains(string(out), "PASS: the node-local DNS path is proven") {
			errorf(t, "%s: output lacks the PASS line", line)
		}
	}
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
	}
	return err == nil
}

// verifyPasses waits for lrpdns verify to pass on the flows of one round of
// queries (20 of the mix from every node's client). Right after the redirect comes back, a client
// flow whose 5-tuple was used while it was gone still follows Cilium's
// conntrack entry to CoreDNS until the entry expires (a minute without
// packets): answered, but not through the cache. Each round is judged on
// its own flows, so the time this takes is measured, not hidden.
func (s *suite) verifyPasses(t *testing.T) {
	t.Helper()
	s.verifyPassesOver(t, flowpb.IPVersion_IP_NOT_USED)
}

// verifyPassesOver is verifyPasses for clients of one IP version: the
// rounds' queries go to kube-dns's ClusterIP of that version.
func (s *suite) verifyPassesOver(t *testing.T, v flowpb.IPVersion) {
	t.Helper()
	s.verifyPassesWithout(t, v, nil)
}

// verifyPassesWithout is verifyPassesOver judging the flows that skip does
// not take away (nil: all of them); it logs how many it took.
func (s *suite) verifyPassesWithout(t *testing.T, v flowpb.IPVersion, skip func(*flowpb.Flow) bool) {
	t.Helper()
	var server []string
	if v == flowpb.IPVersion_IPv6 {
		server = []string{"--server", s.kubeDNSv6}
	}
	var results verify.Report
	start := time.Now()
	rounds := 0
	failed := map[string]int{} // check -> rounds it failed in
	waitFor(t, 3*time.Minute, "verify to pass", func() bool {
		rounds++
		round := time.Now()
		s.probeEveryNode(t, append(append([]string{"--count", "20", "--interval", "20ms"}, server...), s.mix...)...)
		time.Sleep(500 * time.Millisecond)
		var err error
		if results, err = s.verifyClientsWithout(t, time.Since(round), v, skip); err != nil {
			t.Logf("verify: %v", err)
			return false
		}
		for _, n := range results.Nodes {
			for _, c := range n.Checks {
				if c.Status == verify.Fail || (c.Status == verify.NoData && !c.Optional) {
					failed[c.Name+" "+string(c.Status)]++
				}
			}
		}
		return results.Passed()
	}, func() { t.Logf("last lrpdns verify:\n%s", report(results)) })
	t.Logf("lrpdns verify passed after %v (%d rounds of 20 queries; checks that failed in earlier rounds: %v):\n%s",
		time.Since(start).Round(time.Second), rounds, failed, report(results))
}

// upstreamDeleted deletes kube-dns-upstream: the controller re-creates it on
// the same ClusterIP, which the running caches forward to; no cache restarts.
func (s *suite) upstreamDeleted(t *testing.T) {
	ctx := t.Context()
	key := client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.UpstreamService}
	before := &corev1.Service{}
	if err := s.c.Get(ctx, key, before); err != nil {
		fatal(t, err)
	}
	pods := s.cachePods(t)
	s.underLoad(t, "kube-dns-upstream deleted by hand", "", 30*time.Second, func(ev *judge.Evidence) {
		deleted := time.Now()
		ev.UpstreamDeleted = deleted
		if err := s.c.Delete(ctx, before); err != nil {
			fatal(t, err)
		}
		after := &corev1.Service{}
		waitFor(t, time.Minute, "kube-dns-upstream to be re-created", func() bool {
			return s.c.Get(ctx, key, after) == nil && after.UID != before.UID
		})
		recreated := time.Now()
		if after.Spec.ClusterIP != before.Spec.ClusterIP {
			errorf(t, "kube-dns-upstream re-created on %s, want its previous address %s", after.Spec.ClusterIP, before.Spec.ClusterIP)
		}
		// Until the new Service has ready endpoints, Cilium has no
		// backend for it: the gap ends here, not at re-creation.
		waitFor(t, time.Minute, "the re-created kube-dns-upstream to have ready endpoints", func() bool {
			return s.readyEndpoints(ctx, after) > 0
		})
		ev.UpstreamReady = time.Now()
		t.Logf("kube-dns-upstream deleted at %s; re-created after %v, with ready endpoints after %v",
			deleted.UTC().Format("15:04:05.000"), recreated.Sub(deleted).Round(time.Millisecond), time.Since(deleted).Round(time.Millisecond))
	})
	if now := s.cachePods(t); fmt.Sprint(now) != fmt.Sprint(pods) {
		errorf(t, "cache pods %v -> %v: want no restart", pods, now)
	}
}

// readyEndpoints counts the ready endpoints in svc's EndpointSlices (those
// the EndpointSlice controller made for this Service object, by owner UID).
func (s *suite) readyEndpoints(ctx context.Context, svc *corev1.Service) int {
	var list discoveryv1.EndpointSliceList
	if err := s.c.List(ctx, &list, client.InNamespace(svc.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return 0
	}
	n := 0
	for _, es := range list.Items {
		if !slices.ContainsFunc(es.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == svc.UID }) {
			continue
		}
		for _, e := range es.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

// orphaned deletes the DaemonSet with --cascade=orphan (its pods keep
// running, the controller withdraws the policy), then re-applies the
// manifests: the pods are adopted, not restarted, and still forward to the
// same kube-dns-upstream address.
func (s *suite) orphaned(t *testing.T) {
	ctx := t.Context()
	pods := s.cachePods(t)
	up := &corev1.Service{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.UpstreamService}, up); err != nil {
		fatal(t, err)
	}
	s.underLoad(t, "DaemonSet deleted with --cascade=orphan and re-applied", "", 60*time.Second, func(*judge.Evidence) {
		if out, err := s.cluster.Kubectl(ctx, "-n", s.names.Namespace, "delete", "daemonset", s.names.DaemonSet, "--cascade=orphan"); err != nil {
			fatalf(t, "%v: %s", err, out)
		}
		waitFor(t, time.Minute, "the policy to go", func() bool {
			return apierrors.IsNotFound(s.c.Get(ctx, s.policyKey(), &ciliumv2.CiliumLocalRedirectPolicy{}))
		})
		if out, err := s.cluster.Install(ctx); err != nil {
			fatalf(t, "%v: %s", err, out)
		}
		s.waitRedirect(t, nil)
	})
	if now := s.cachePods(t); fmt.Sprint(now) != fmt.Sprint(pods) {
		errorf(t, "cache pods %v -> %v: want them adopted, not restarted", pods, now)
	}
	after := &corev1.Service{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.UpstreamService}, after); err != nil || after.Spec.ClusterIP != up.Spec.ClusterIP {
		errorf(t, "kube-dns-upstream %s (%v), want still %s", after.Spec.ClusterIP, err, up.Spec.ClusterIP)
	}
}

// deleteCache deletes the cache DaemonSet under queries: the policy goes
// first (the controller, then the garbage collector), the pods drain, and
// every query is answered, by kube-dns at the end.
func (s *suite) deleteCache(t *testing.T) {
	ctx := t.Context()
	s.underLoad(t, "cache DaemonSet deleted", "", 40*time.Second, func(*judge.Evidence) {
		ds := &appsv1.DaemonSet{}
		if err := s.c.Get(ctx, s.dsKey(), ds); err != nil {
			fatal(t, err)
		}
		if err := s.c.Delete(ctx, ds); err != nil {
			fatal(t, err)
		}
		waitFor(t, 2*time.Minute, "the policy and the cache pods to go", func() bool {
			return apierrors.IsNotFound(s.c.Get(ctx, s.policyKey(), &ciliumv2.CiliumLocalRedirectPolicy{})) && len(s.cachePods(t)) == 0
		})
	})
}

// uninstall re-installs, then removes everything with kubectl delete -k
// (or -f manifests/install.yaml, or helm uninstall) under queries: kubectl deletes in kustomize's order
// (RBAC and Services before the DaemonSet), helm in its own (Services, the
// controller's Deployment, then the DaemonSet); the garbage collector
// removes the policy after the DaemonSet, and kube-dns-upstream only after
// both.
func (s *suite) uninstall(t *testing.T) {
	ctx := t.Context()
	if out, err := s.cluster.Install(ctx); err != nil {
		fatalf(t, "%v: %s", err, out)
	}
	s.waitRedirect(t, nil)
	s.verifyPasses(t)
	s.underLoad(t, "uninstall", "uninstall ("+s.cluster.UninstallCommand()+")", 60*time.Second, func(*judge.Evidence) {
		if out, err := s.cluster.Uninstall(ctx); err != nil {
			fatalf(t, "%v: %s", err, out)
		}
		waitFor(t, 2*time.Minute, "the policy, the cache pods and kube-dns-upstream to go", func() bool {
			return apierrors.IsNotFound(s.c.Get(ctx, s.policyKey(), &ciliumv2.CiliumLocalRedirectPolicy{})) && len(s.cachePods(t)) == 0 &&
				apierrors.IsNotFound(s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.UpstreamService}, &corev1.Service{}))
		})
	})
}

// saveFlows keeps the last since of DNS flows in LRPDNS_E2E_ARTIFACTS, named
// after the scenario: Hubble's ring buffer holds only minutes of them.
func (s *suite) saveFlows(t *testing.T, scenario string, since time.Duration) []*observerpb.GetFlowsResponse {
	flows, err := s.fetchFlows(since)
	var incomplete *verify.Incomplete
	if err != nil {
		t.Logf("saving flows: %v", err)
		if !errors.As(err, &incomplete) {
			return nil
		}
	}
	s.writeFlows(t, scenario, flows)
	return flows
}

// fetchFlows reads the last since of DNS flows, when there is somewhere to
// save them (LRPDNS_E2E_ARTIFACTS).
func (s *suite) fetchFlows(since time.Duration) ([]*observerpb.GetFlowsResponse, error) {
	if os.Getenv("LRPDNS_E2E_ARTIFACTS") == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return verify.FromServer(ctx, s.cluster.HubbleServer(), since, verify.DefaultConfig())
}

// writeFlows saves flows in LRPDNS_E2E_ARTIFACTS, named after what.
func (s *suite) writeFlows(t *testing.T, what string, flows []*observerpb.GetFlowsResponse) {
	dir := os.Getenv("LRPDNS_E2E_ARTIFACTS")
	if dir == "" || len(flows) == 0 {
		return
	}
	var b strings.Builder
	for _, f := range flows {
		line, _ := protojson.Marshal(f)
		b.Write(line)
		b.WriteByte('\n')
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(what))
	path := filepath.Join(dir, name+".jsonpb")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err == nil {
			t.Logf("saved %d DNS flows to %s", len(flows), path)
		}
	}
}

// saveArtifacts keeps the last 15 minutes of DNS flows of a failed run in
// LRPDNS_E2E_ARTIFACTS (lrpdns verify --flows reads them).
func (s *suite) saveArtifacts(t *testing.T) {
	if t.Failed() {
		s.saveFlows(t, "flows", 15*time.Minute)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, onTimeout ...func()) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, f := range onTimeout {
				f()
			}
			fatalf(t, "timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Second)
	}
}
