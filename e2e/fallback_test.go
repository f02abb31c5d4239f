//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/pkg/lrp"
)

// fallbackGate is the readiness gate the measurement adds to the cache's
// pods: a pod whose process serves can be made not Ready, and a new pod
// stays not Ready, until the test says otherwise.
const fallbackGate = corev1.PodConditionType("lrpdns.io/e2e-ready")

// fallbackCount is where one frontend's queries went in one state of the
// node's cache pod: the client's own count, and Hubble's delivered and
// dropped flows.
type fallbackCount struct {
	sent, answered, failed      int
	toCache, toCoreDNS, dropped int
}

func (c fallbackCount) String() string {
	return fmt.Sprintf("%d sent, %d answered, %d failed; flows delivered to the cache pod %d, to CoreDNS %d; dropped %d",
		c.sent, c.answered, c.failed, c.toCache, c.toCoreDNS, c.dropped)
}

// TestCiliumFallback measures what the running Cilium does with DNS to
// kube-dns (and to the redirected address, LRPDNS_E2E_CLUSTER_DNS) while the
// node's cache pod is ready, absent, started but not yet ready, ready again,
// and not ready: the controller is stopped and the policies stay as it makes
// them. It prints one line per state and frontend,
//
//	fallback <state> (<frontend>): N sent, N answered, N failed; flows delivered to the cache pod N, to CoreDNS N; dropped N
//
// and requires what lrp.ExpectedCiliumBehaviour says of the Cilium version
// the cluster runs (the cilium DaemonSet's image, as the controller reads
// it): the controller's version gate is what this measures.
func TestCiliumFallback(t *testing.T) {
	if os.Getenv("LRPDNS_E2E_SUITE") != "fallback" {
		t.Skip("LRPDNS_E2E_SUITE is not fallback (LAB_SUITE=fallback make e2e-lab)")
	}
	s := newSuite(t)
	ctx := t.Context()
	agent := &appsv1.DaemonSet{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "cilium"}, agent); err != nil {
		fatalf(t, "Cilium's DaemonSet kube-system/cilium: %v", err)
	}
	v, ok := lrp.AgentVersion(agent)
	if !ok {
		fatalf(t, "Cilium's DaemonSet has no versioned image")
	}
	want := lrp.ExpectedCiliumBehaviour(v)
	t.Logf("Cilium %s: lrpdns expects %+v", v, want)

	// The policies as the controller makes them, whatever its gate says of
	// this version, with the controller stopped.
	s.scaleController(t, 0)
	waitFor(t, 3*time.Minute, "the cache to be rolled out", func() bool { return s.rolledOut(ctx) })
	kubeDNS := &corev1.Service{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.KubeDNSService}, kubeDNS); err != nil {
		fatal(t, err)
	}
	ds := &appsv1.DaemonSet{}
	if err := s.c.Get(ctx, s.dsKey(), ds); err != nil {
		fatal(t, err)
	}
	p, err := lrp.DesiredPolicy(s.names, kubeDNS, ds)
	if err != nil {
		fatal(t, err)
	}
	policies := []*ciliumv2.CiliumLocalRedirectPolicy{p}
	frontends := []string{kubeDNS.Spec.ClusterIP}
	if s.clusterDNS != "" {
		p, err := lrp.DesiredAddressPolicy(s.names, kubeDNS, ds, netip.MustParseAddr(s.clusterDNS))
		if err != nil {
			fatal(t, err)
		}
		policies = append(policies, p)
		frontends = append(frontends, s.clusterDNS)
	}
	for _, p := range policies {
		if err := s.c.Create(ctx, p); err != nil && !apierrors.IsAlreadyExists(err) {
			fatal(t, err)
		}
	}

	measure := func(state string) []fallbackCount {
		time.Sleep(2 * time.Second) // for the agent to act on the change
		var out []fallbackCount
		for _, fe := range frontends {
			began := time.Now()
			r, err := s.probe(ctx, append([]string{"--server", fe, "--duration", "8s", "--interval", "50ms"}, s.mix...)...)
			if err != nil && r.Sent == 0 {
				fatalf(t, "probe %s: %v", fe, err)
			}
			time.Sleep(time.Second)
			c := fallbackCount{sent: r.Sent, answered: r.Answered, failed: r.Failed}
			c.toCache, c.toCoreDNS, c.dropped = s.deliveries(t, time.Since(began))
			t.Logf("fallback %s (%s): %s", state, fe, c)
			out = append(out, c)
		}
		return out
	}
	podReady := func(pod *corev1.Pod) bool {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}

	ready := measure("cache pod ready")

	// No cache pod on the node: a node selector no node has. The same
	// change adds the readiness gate for the states after it.
	s.patchDaemonSet(t, `{"spec":{"template":{"spec":{"nodeSelector":{"lrpdns.io/e2e-fallback":"no-node"},"readinessGates":[{"conditionType":"`+string(fallbackGate)+`"}]}}}}`)
	waitFor(t, 2*time.Minute, "no cache pod", func() bool { return len(s.cacheObjects(t)) == 0 })
	none := measure("no cache pod on the node")

	// A cache pod that runs, serves and passes its probes, but is not
	// Ready: its readiness gate is not set yet.
	s.patchDaemonSet(t, `{"spec":{"template":{"spec":{"nodeSelector":null}}}}`)
	var pod corev1.Pod
	waitFor(t, 2*time.Minute, "a started cache pod, its containers ready, the pod not", func() bool {
		for _, p := range s.cacheObjects(t) {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.ContainersReady && c.Status == corev1.ConditionTrue && !podReady(&p) {
					pod = p
					return true
				}
			}
		}
		return false
	})
	starting := measure("cache pod started, not ready")

	setGate := func(open bool) {
		status := corev1.ConditionFalse
		if open {
			status = corev1.ConditionTrue
		}
		patch, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{Type: fallbackGate, Status: status}}}})
		if err := s.c.Status().Patch(ctx, &pod, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
			fatal(t, err)
		}
		waitFor(t, time.Minute, fmt.Sprintf("cache pod %s Ready=%v", pod.Name, open), func() bool {
			return s.c.Get(ctx, client.ObjectKeyFromObject(&pod), &pod) == nil && podReady(&pod) == open
		})
	}
	setGate(true)
	readyAgain := measure("cache pod ready again")
	setGate(false)
	notReady := measure("cache pod not ready")

	// What Cilium did, as lrpdns's table states it. Each state's evidence:
	// delivered where it should be, and no query lost where kube-dns is
	// behind the frontend.
	redirected := func(c fallbackCount) bool { return c.toCache > 0 && c.failed == 0 }
	fellBack := func(c fallbackCount) bool { return c.toCache == 0 && c.toCoreDNS > 0 && c.failed == 0 }
	got := lrp.CiliumBehaviour{
		FallsBack:     fellBack(none[0]),
		WaitsForReady: fellBack(starting[0]) && fellBack(notReady[0]),
	}
	for i, c := range [][]fallbackCount{ready, readyAgain} {
		if !redirected(c[0]) {
			errorf(t, "Cilium %s: with the cache pod ready (%d), kube-dns's queries: %s; want every one answered, delivered to the cache pod", v, i+1, c[0])
		}
	}
	if len(frontends) > 1 {
		got.AddressRedirect = redirected(ready[1]) && redirected(readyAgain[1])
		// Where no cache pod is Ready, the address has nothing behind it in
		// the lab: none of its queries may reach a cache that is not Ready.
		for _, c := range [][]fallbackCount{starting, notReady} {
			got.WaitsForReady = got.WaitsForReady && c[1].toCache == 0
		}
	} else {
		got.AddressRedirect = want.AddressRedirect // not measured here
	}
	if got != want {
		errorf(t, "Cilium %s measured %+v; lrpdns's table expects %+v: correct lrp's table of Cilium releases", v, got, want)
	}
}

// patchDaemonSet applies a strategic merge patch to the cache DaemonSet.
func (s *suite) patchDaemonSet(t *testing.T, patch string) {
	t.Helper()
	ds := &appsv1.DaemonSet{}
	if err := s.c.Get(t.Context(), s.dsKey(), ds); err != nil {
		fatal(t, err)
	}
	if err := s.c.Patch(t.Context(), ds, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		fatalf(t, "patch DaemonSet %s: %v", patch, err)
	}
}

// deliveries counts, in the last since of Hubble's flows, clients' DNS
// queries delivered to a cache pod and to CoreDNS, and dropped DNS packets,
// as lrpdns verify's checks match them.
func (s *suite) deliveries(t *testing.T, since time.Duration) (toCache, toCoreDNS, dropped int) {
	t.Helper()
	rep, err := s.verify(t, since)
	if err != nil {
		fatal(t, err)
	}
	for _, n := range rep.Nodes {
		for _, r := range n.Checks {
			switch r.Name {
			case "clients-to-cache":
				toCache += r.Matched
			case "no-bypass":
				toCoreDNS += r.Matched
			case "no-drops":
				dropped += r.Matched
			}
		}
	}
	return toCache, toCoreDNS, dropped
}
