//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/pkg/lrp"
	"github.com/lrpdns/lrpdns/pkg/verify"
)

const clientPod = "lrpdns-e2e-client"

// probeResult mirrors `lrpdns probe` output.
type probeResult struct {
	Sent, Answered, Failed int
	Failures               []string
	Answers                map[string]int
}

type suite struct {
	cluster Cluster
	c       client.Client
	names   lrp.Names
}

func TestE2E(t *testing.T) {
	cluster, err := fromEnv()
	if err != nil {
		t.Skip(err)
	}
	cfg, err := cluster.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	scheme, err := lrp.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{cluster: cluster, c: c, names: lrp.DefaultNames()}
	t.Cleanup(func() { s.saveArtifacts(t) })
	s.startClient(t)

	t.Run("policy is in place", s.policyInPlace)
	t.Run("names resolve through the cache", s.resolve)
	t.Run("verify passes on Hubble flows", s.verifyFlows)
	t.Run("a policy removed by hand shows as bypass and is restored", s.bypassReported)
	t.Run("rollout restart loses no query", s.rollout)
	t.Run("deleting the cache falls back to kube-dns", s.deleteCache)
}

func (s *suite) startClient(t *testing.T) {
	ctx := t.Context()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: clientPod, Namespace: "default", Labels: map[string]string{"app": "lrpdns-e2e-client"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "client", Image: s.cluster.Image(), ImagePullPolicy: corev1.PullIfNotPresent,
			// Background DNS traffic, and a process to exec into.
			Args: []string{"probe", "--duration", "24h", "--interval", "1s", "kubernetes.default.svc.cluster.local"},
		}}},
	}
	if err := s.c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the client pod to run", func() bool {
		p := &corev1.Pod{}
		return s.c.Get(ctx, client.ObjectKeyFromObject(pod), p) == nil && p.Status.Phase == corev1.PodRunning
	})
}

func (s *suite) probe(ctx context.Context, args ...string) (probeResult, error) {
	out, err := s.cluster.Exec(ctx, "default", clientPod, append([]string{"/lrpdns", "probe"}, args...)...)
	var r probeResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		return r, errors.Join(err, fmt.Errorf("probe output %q: %w", out, jerr))
	}
	return r, err
}

func (s *suite) policyInPlace(t *testing.T) {
	waitFor(t, 2*time.Minute, "the CiliumLocalRedirectPolicy", func() bool {
		return s.c.Get(t.Context(), client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, &ciliumv2.CiliumLocalRedirectPolicy{}) == nil
	})
}

func (s *suite) resolve(t *testing.T) {
	for _, name := range []string{"kubernetes.default.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local", "example.com"} {
		r, err := s.probe(t.Context(), "--count", "10", "--interval", "50ms", name)
		if err != nil || r.Answered != r.Sent {
			t.Errorf("%s: %+v, %v", name, r, err)
		}
		// A second, TCP run exercises the redirect's TCP port.
		r, err = s.probe(t.Context(), "--tcp", "--count", "5", "--interval", "50ms", name)
		if err != nil || r.Answered != r.Sent {
			t.Errorf("%s over TCP: %+v, %v", name, r, err)
		}
	}
}

// verifyConfig is verify's default, with the node's resolvers when the
// provider knows them (LRPDNS_E2E_NODE_RESOLVERS).
func verifyConfig(t *testing.T) verify.Config {
	c := verify.DefaultConfig()
	for _, s := range strings.Split(os.Getenv("LRPDNS_E2E_NODE_RESOLVERS"), ",") {
		if s != "" {
			c.NodeResolvers = append(c.NodeResolvers, netip.MustParseAddr(s))
		}
	}
	return c
}

func (s *suite) verify(t *testing.T, since time.Duration) []verify.Result {
	flows, err := verify.FromServer(t.Context(), s.cluster.HubbleServer(), since, verifyConfig(t))
	if err != nil {
		t.Logf("hubble: %v", err)
		return nil
	}
	results, err := verify.Evaluate(t.Context(), verifyConfig(t), flows)
	if err != nil {
		t.Fatal(err)
	}
	return results
}

func report(results []verify.Result) string {
	var b strings.Builder
	_ = verify.WriteText(&b, results)
	return b.String()
}

func (s *suite) verifyFlows(t *testing.T) {
	ctx := t.Context()
	var results []verify.Result
	waitFor(t, 2*time.Minute, "verify to pass", func() bool {
		if _, err := s.probe(ctx, "--count", "20", "--interval", "20ms", "kubernetes.default.svc.cluster.local", "example.com"); err != nil {
			t.Logf("probe: %v", err)
		}
		results = s.verify(t, 2*time.Minute)
		return results != nil && verify.Passed(results)
	})
	t.Logf("lrpdns verify:\n%s", report(results))
}

// bypassReported stops the controller, deletes the policy by hand, and
// expects verify to see clients reach CoreDNS directly; then the controller
// comes back and restores the policy.
func (s *suite) bypassReported(t *testing.T) {
	ctx := t.Context()
	key := client.ObjectKey{Namespace: s.names.Namespace, Name: "lrpdns-controller"}
	scale := func(n int32) {
		d := &appsv1.Deployment{}
		if err := s.c.Get(ctx, key, d); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(d.DeepCopy())
		d.Spec.Replicas = &n
		if err := s.c.Patch(ctx, d, patch); err != nil {
			t.Fatal(err)
		}
	}
	scale(0)
	waitFor(t, 2*time.Minute, "the controller to stop", func() bool {
		pods := &corev1.PodList{}
		return s.c.List(ctx, pods, client.InNamespace(s.names.Namespace), client.MatchingLabels{"app.kubernetes.io/name": "lrpdns-controller"}) == nil && len(pods.Items) == 0
	})
	p := &ciliumv2.CiliumLocalRedirectPolicy{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, p); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	time.Sleep(3 * time.Second) // let the datapath drop the redirect
	if r, err := s.probe(ctx, "--count", "10", "--interval", "50ms", "kubernetes.default.svc.cluster.local"); err != nil || r.Answered != r.Sent {
		t.Errorf("without the policy: %+v, %v; want every query answered, by CoreDNS", r, err)
	}
	time.Sleep(2 * time.Second)
	results := s.verify(t, time.Since(removed)+time.Second)
	t.Logf("lrpdns verify without the policy:\n%s", report(results))
	for _, r := range results {
		if r.Name == "no-bypass" && r.Status != verify.Fail {
			t.Errorf("no-bypass = %s without the policy, want FAIL", r.Status)
		}
	}

	scale(2)
	restoreStart := time.Now()
	waitFor(t, 3*time.Minute, "the policy to be restored", func() bool {
		return s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, &ciliumv2.CiliumLocalRedirectPolicy{}) == nil
	})
	t.Logf("controller back: policy restored %v after scaling it up", time.Since(restoreStart).Round(time.Second))
	waitFor(t, time.Minute, "verify to pass again", func() bool {
		if _, err := s.probe(ctx, "--count", "10", "--interval", "20ms", "kubernetes.default.svc.cluster.local", "example.com"); err != nil {
			t.Logf("probe: %v", err)
		}
		results := s.verify(t, 10*time.Second)
		return results != nil && verify.Passed(results)
	})
}

func (s *suite) rollout(t *testing.T) {
	ctx := t.Context()
	done := make(chan struct{})
	var r probeResult
	var perr error
	go func() {
		defer close(done)
		r, perr = s.probe(ctx, "--duration", "90s", "--interval", "20ms",
			"kubernetes.default.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local")
	}()
	time.Sleep(5 * time.Second)
	ds := &appsv1.DaemonSet{}
	key := client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.DaemonSet}
	if err := s.c.Get(ctx, key, ds); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ds.DeepCopy())
	if ds.Spec.Template.Annotations == nil {
		ds.Spec.Template.Annotations = map[string]string{}
	}
	ds.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] = time.Now().Format(time.RFC3339)
	if err := s.c.Patch(ctx, ds, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the rollout to finish", func() bool {
		cur := &appsv1.DaemonSet{}
		return s.c.Get(ctx, key, cur) == nil && cur.Status.ObservedGeneration >= cur.Generation &&
			cur.Status.UpdatedNumberScheduled == cur.Status.DesiredNumberScheduled &&
			cur.Status.NumberAvailable == cur.Status.DesiredNumberScheduled
	})
	<-done
	t.Logf("rollout restart under continuous queries: %d sent, %d answered, %d failed", r.Sent, r.Answered, r.Failed)
	if perr != nil || r.Failed != 0 || r.Sent < 1000 {
		t.Errorf("queries during the rollout: %+v, %v; want over 1000 sent and 0 failed", r, perr)
	}
}

func (s *suite) deleteCache(t *testing.T) {
	ctx := t.Context()
	ds := &appsv1.DaemonSet{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.DaemonSet}, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Delete(ctx, ds); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the policy to go", func() bool {
		err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.Policy}, &ciliumv2.CiliumLocalRedirectPolicy{})
		return apierrors.IsNotFound(err)
	})
	r, err := s.probe(ctx, "--count", "20", "--interval", "50ms", "kubernetes.default.svc.cluster.local")
	if err != nil || r.Answered != r.Sent {
		t.Errorf("after deleting the cache: %+v, %v; want every query answered by kube-dns", r, err)
	}
}

// saveArtifacts keeps flows and logs of a failed run in LRPDNS_E2E_ARTIFACTS.
func (s *suite) saveArtifacts(t *testing.T) {
	dir := os.Getenv("LRPDNS_E2E_ARTIFACTS")
	if !t.Failed() || dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Log(err)
		return
	}
	flows, err := verify.FromServer(ctx, s.cluster.HubbleServer(), 15*time.Minute, verify.DefaultConfig())
	if err != nil {
		t.Logf("saving flows: %v", err)
	}
	var b strings.Builder
	for _, f := range flows {
		line, _ := protojson.Marshal(f)
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, "flows.jsonpb")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err == nil {
		t.Logf("saved %d flows to %s (lrpdns verify --flows %s)", len(flows), path, path)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Second)
	}
}
