package lrp

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/internal/dnstest"
	"github.com/lrpdns/lrpdns/internal/testenv"
)

func wantSpec(ns, udpName, tcpName, backendPort string) ciliumv2.CiliumLocalRedirectPolicySpec {
	return ciliumv2.CiliumLocalRedirectPolicySpec{
		RedirectFrontend: ciliumv2.RedirectFrontend{ServiceMatcher: &ciliumv2.ServiceInfo{
			Name: "kube-dns", Namespace: ns,
			ToPorts: []ciliumv2.PortInfo{{Port: "53", Protocol: "UDP", Name: udpName}, {Port: "53", Protocol: "TCP", Name: tcpName}},
		}},
		RedirectBackend: ciliumv2.RedirectBackend{
			LocalEndpointSelector: slimv1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "node-local-dns"}},
			ToPorts:               []ciliumv2.PortInfo{{Port: backendPort, Protocol: "UDP", Name: udpName}, {Port: backendPort, Protocol: "TCP", Name: tcpName}},
		},
		Description: "Managed by lrpdns: DNS for Service " + ns + "/kube-dns answered by the DaemonSet " + ns + "/node-local-dns pod on the same node.",
	}
}

// assertOwnedBy checks that the DaemonSet is obj's one controller owner
// (with blockOwnerDeletion), so deleting it collects obj.
func assertOwnedBy(t *testing.T, what string, obj client.Object, ds *appsv1.DaemonSet) {
	t.Helper()
	var controllers []metav1.OwnerReference
	for _, r := range obj.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller {
			controllers = append(controllers, r)
		}
	}
	if len(controllers) != 1 || controllers[0].UID != ds.UID || controllers[0].Kind != "DaemonSet" ||
		controllers[0].BlockOwnerDeletion == nil || !*controllers[0].BlockOwnerDeletion {
		t.Errorf("%s owner references = %+v, want the DaemonSet %s (uid %s) as its one controller, so deleting it collects %s", what, obj.GetOwnerReferences(), ds.Name, ds.UID, what)
	}
	if obj.GetLabels()[ManagedByLabel] != ManagedByValue {
		t.Errorf("%s labels = %v, want %s=%s", what, obj.GetLabels(), ManagedByLabel, ManagedByValue)
	}
}

func TestFreshInstall(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)

	p := s.waitPolicy(nil)
	if diff := cmp.Diff(wantSpec(s.ns, "dns", "dns-tcp", "5353"), p.Spec); diff != "" {
		t.Errorf("policy spec (-want +got):\n%s", diff)
	}
	ds := s.cacheDaemonSet()
	assertOwnedBy(t, "the policy", p, ds)

	up := s.waitUpstreamOwnedByPolicy(p)
	assertOwnedBy(t, "the upstream Service", up, ds)
	kd := &corev1.Service{}
	if err := s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: "kube-dns"}, kd); err != nil {
		t.Fatal(err)
	}
	if up.Spec.ClusterIP == "" || up.Spec.ClusterIP == kd.Spec.ClusterIP {
		t.Errorf("upstream ClusterIP %q, kube-dns %q: want its own address", up.Spec.ClusterIP, kd.Spec.ClusterIP)
	}
	if diff := cmp.Diff(kd.Spec.Selector, up.Spec.Selector); diff != "" {
		t.Errorf("upstream selector (-kube-dns +upstream):\n%s", diff)
	}
	if diff := cmp.Diff(kd.Spec.IPFamilies, up.Spec.IPFamilies); diff != "" {
		t.Errorf("upstream IP families (-kube-dns +upstream):\n%s", diff)
	}
	var ports []string
	for _, p := range up.Spec.Ports {
		ports = append(ports, p.Name+"/"+string(p.Protocol)+"/"+p.TargetPort.String())
	}
	if diff := cmp.Diff([]string{"dns/UDP/53", "dns-tcp/TCP/53"}, ports); diff != "" {
		t.Errorf("upstream ports, DNS only (-want +got):\n%s", diff)
	}
	var policyNote string
	s.eventually("the policy's Created event", func() bool {
		for _, n := range s.events(ReasonCreated) {
			if strings.HasPrefix(n, "redirecting") {
				policyNote = n
			}
		}
		return policyNote != ""
	})
	for _, want := range []string{"kube-dns", "dns 53/UDP", "dns-tcp 53/TCP", "node-local-dns", "dns 5353/UDP", "dns-tcp 5353/TCP"} {
		if !strings.Contains(policyNote, want) {
			t.Errorf("Created event %q does not name %s", policyNote, want)
		}
	}
}

// waitUpstreamOwnedByPolicy waits for kube-dns-upstream to carry an owner
// reference to p (not as controller), so the garbage collector deletes it
// only after the policy.
func (s *scenario) waitUpstreamOwnedByPolicy(p *ciliumv2.CiliumLocalRedirectPolicy) *corev1.Service {
	s.t.Helper()
	var up *corev1.Service
	s.eventually("the upstream Service owned by the policy too", func() bool {
		var err error
		up, err = s.upstream()
		if err != nil {
			return false
		}
		for _, r := range up.OwnerReferences {
			if r.UID == p.UID && r.Kind == ciliumv2.CLRPKindDefinition && (r.Controller == nil || !*r.Controller) {
				return true
			}
		}
		return false
	})
	return up
}

func TestWaitsForReadyCacheAndUpstream(t *testing.T) {
	s := newScenario(t)
	s.cilium("true", "quay.io/cilium/cilium:v1.20.2")
	s.kubeDNS(dnsServicePortsFixture())
	s.daemonSet(cacheContainerPorts("dns", "dns-tcp", 5353))
	s.startController(s.cfg)

	if _, err := waitFor(s, func() (*corev1.Service, error) { return s.upstream() }); err != nil {
		t.Fatalf("upstream Service not created while waiting: %v", err)
	}
	s.consistentlyNoPolicy(time.Second) // no ready pods, no endpoints

	s.setReady(1)
	s.upstreamEndpoints(false)
	s.consistentlyNoPolicy(time.Second) // endpoints not ready

	s.upstreamEndpoints(true)
	s.waitPolicy(nil)
}

func waitFor[T any](s *scenario, get func() (T, error)) (T, error) {
	var v T
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if v, err = get(); err == nil {
			return v, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return v, err
}

func TestCustomPortNames(t *testing.T) {
	s := newScenario(t)
	s.cilium("true", "quay.io/cilium/cilium:v1.20.2")
	s.kubeDNS([]corev1.ServicePort{
		{Name: "udp-53", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
		{Name: "tcp-53", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
	})
	s.daemonSet(cacheContainerPorts("udp-53", "tcp-53", 5300))
	s.upstreamEndpoints(true)
	s.setReady(2)
	s.startController(s.cfg)

	p := s.waitPolicy(nil)
	if diff := cmp.Diff(wantSpec(s.ns, "udp-53", "tcp-53", "5300"), p.Spec); diff != "" {
		t.Errorf("policy spec (-want +got):\n%s", diff)
	}
}

func TestMismatchedPortNames(t *testing.T) {
	s := newScenario(t)
	s.install("true", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("domain", "domain-tcp", 5353))
	s.startController(s.cfg)

	note := s.waitEvent(ReasonPortMismatch)
	for _, want := range []string{`port "dns"`, "kube-dns", "node-local-dns", `"domain" 5353/UDP`, "no containerPort named"} {
		if !strings.Contains(note, want) {
			t.Errorf("event %q does not name %s", note, want)
		}
	}
	s.consistentlyNoPolicy(time.Second)
}

// TestPortChangeWithdrawsUntilRolledOut: a new cache port never meets old
// pods. The policy is withdrawn at once and created again, with the new
// port, only when every node runs the new template.
func TestPortChangeWithdrawsUntilRolledOut(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.setReady(3)
	s.startController(s.cfg)
	old := s.waitPolicy(nil)

	ds := s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", 5354)
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	// The DaemonSet controller has not even seen the change: withdrawn.
	s.waitNoPolicy()
	note := s.waitEvent(ReasonWithdrawn)
	for _, want := range []string{"dns 5353/UDP -> dns 5354/UDP", "kube-dns"} {
		if !strings.Contains(strings.ReplaceAll(note, ", dns-tcp 5353/TCP", ""), want) {
			t.Errorf("withdrawn event %q does not say %s", note, want)
		}
	}
	// Mid-rollout, and complete but for a node whose old pod is still in
	// its lameduck: no policy.
	s.setRollout(3, 1, 3)
	s.consistentlyNoPolicy(time.Second)
	s.setRollout(3, 2, 3)
	s.consistentlyNoPolicy(time.Second)
	if notes := s.events(ReasonWaiting); len(notes) == 0 || !strings.Contains(strings.Join(notes, "\n"), "of 3 nodes run the current pod template") {
		t.Errorf("waiting events %q do not say how far the rollout is", notes)
	}

	s.setRollout(3, 3, 3)
	p := s.waitPolicy(nil)
	if p.UID == old.UID {
		t.Fatal("policy not re-created")
	}
	if diff := cmp.Diff(wantSpec(s.ns, "dns", "dns-tcp", "5354"), p.Spec); diff != "" {
		t.Errorf("re-created policy spec (-want +got):\n%s", diff)
	}

	// kube-dns's port names change (and the cache's with them): the same
	// transition.
	kd := &corev1.Service{}
	if err := s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: "kube-dns"}, kd); err != nil {
		t.Fatal(err)
	}
	ds = s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = append(ds.Spec.Template.Spec.Containers[0].Ports,
		corev1.ContainerPort{Name: "dns-udp", Protocol: corev1.ProtocolUDP, ContainerPort: 5354})
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	kd.Spec.Ports[0].Name = "dns-udp"
	if err := s.c.Update(s.ctx(), kd); err != nil {
		t.Fatal(err)
	}
	s.waitNoPolicy()
	s.setRollout(3, 3, 3)
	p2 := s.waitPolicy(func(q *ciliumv2.CiliumLocalRedirectPolicy) bool {
		return q.UID != p.UID && q.Spec.RedirectFrontend.ServiceMatcher.ToPorts[0].Name == "dns-udp"
	})
	if got := p2.Spec.RedirectBackend.ToPorts[0]; got.Name != "dns-udp" || got.Port != "5354" {
		t.Errorf("backend UDP port = %+v, want dns-udp 5354", got)
	}
	s.eventually("the upstream Service to follow kube-dns's port names", func() bool {
		up, err := s.upstream()
		return err == nil && up.Spec.Ports[0].Name == "dns-udp"
	})
}

// TestStaleEndpointSlicesDoNotCount: slices of a deleted kube-dns-upstream
// linger until the garbage collector takes them. Their ready endpoints are
// not the new Service's: no policy on their word.
func TestStaleEndpointSlicesDoNotCount(t *testing.T) {
	s := newScenario(t)
	s.cilium("true", "quay.io/cilium/cilium:v1.20.2")
	s.kubeDNS(dnsServicePortsFixture())
	s.daemonSet(cacheContainerPorts("dns", "dns-tcp", 5353))
	s.setReady(1)
	s.create(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.names.UpstreamService + "-stale", Labels: map[string]string{discoveryv1.LabelServiceName: s.names.UpstreamService},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: s.names.UpstreamService, UID: "a-deleted-service"}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	})
	s.startController(s.cfg)
	if _, err := waitFor(s, func() (*corev1.Service, error) { return s.upstream() }); err != nil {
		t.Fatal(err)
	}
	s.consistentlyNoPolicy(time.Second)
	s.upstreamEndpoints(true) // the new Service's own slice
	s.waitPolicy(nil)
}

// TestYoungUpstreamHoldsThePolicy: kube-dns-upstream's endpoints exist
// before Cilium has programmed a new Service (a second later in the lab), so
// a policy is created only once the Service is UpstreamSettle old: never
// redirect clients to caches whose upstream address does not translate yet.
func TestYoungUpstreamHoldsThePolicy(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg, func(o *Options) { o.UpstreamSettle = 3 * time.Second })
	up, err := waitFor(s, func() (*corev1.Service, error) { return s.upstream() })
	if err != nil {
		t.Fatal(err)
	}
	s.consistentlyNoPolicy(2 * time.Second)
	p := s.waitPolicy(nil)
	if age := p.CreationTimestamp.Sub(up.CreationTimestamp.Time); age < 2*time.Second { // timestamps are whole seconds
		t.Errorf("policy created %v after the upstream Service, want at least the settle time (3s)", age)
	}
	if !strings.Contains(strings.Join(s.events(ReasonWaiting), "\n"), "younger than 3s") {
		t.Errorf("waiting events %q do not say why", s.events(ReasonWaiting))
	}
}

// TestRolloutWithSamePortsKeepsPolicy: a template change that keeps the
// ports (a restart, a new image) leaves the policy alone.
func TestRolloutWithSamePortsKeepsPolicy(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	p := s.waitPolicy(nil)
	ds := s.cacheDaemonSet()
	ds.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
	ds.Spec.Template.Spec.Containers[0].Image = "ghcr.io/lrpdns/node-cache:next"
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	s.setRollout(1, 0, 1)
	time.Sleep(time.Second)
	if cur, err := s.policy(); err != nil || cur.UID != p.UID {
		t.Errorf("policy after a same-port rollout: %v, %+v; want the same policy (uid %s)", err, cur.ObjectMeta, p.UID)
	}
	if n := s.events(ReasonWithdrawn); len(n) != 0 {
		t.Errorf("withdrawn events %q for a rollout that keeps the ports", n)
	}
}

// TestUpstreamRecreatedOnItsAddress: the running caches forward to
// kube-dns-upstream's ClusterIP, read once at their start. Deleted by hand,
// it comes back on the same address.
func TestUpstreamRecreatedOnItsAddress(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	s.waitPolicy(nil)
	up, err := waitFor(s, func() (*corev1.Service, error) { return s.upstream() })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		up = s.deleteUpstream(i+1, up, nil)
	}
	s.eventually("an Event naming the previous address", func() bool {
		return strings.Contains(strings.Join(s.events(ReasonCreated), "\n"), "on its previous address "+up.Spec.ClusterIP)
	})
	if notes := s.events(ReasonUpstreamAddress); len(notes) > 0 {
		t.Errorf("address change events %q, want none", notes)
	}
}

// TestUpstreamAddressOutlivesTheController: a controller that starts while
// kube-dns-upstream is gone (a restart, a new leader) re-creates it on the
// address the redirect recorded, the one the running caches forward to; a
// recorded value that is not an address is not used: the Service gets a
// new address, with a Warning that the ready caches need a restart.
func TestUpstreamAddressOutlivesTheController(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	up, err := waitFor(s, func() (*corev1.Service, error) { return s.upstream() })
	if err != nil {
		t.Fatal(err)
	}
	recorded := func(ips []string) func(*ciliumv2.CiliumLocalRedirectPolicy) bool {
		return func(p *ciliumv2.CiliumLocalRedirectPolicy) bool {
			return p.Annotations[UpstreamIPsAnnotation] == strings.Join(ips, ",")
		}
	}
	s.waitPolicy(recorded(up.Spec.ClusterIPs))
	s.stopController()
	up = s.deleteUpstream(1, up, func(*corev1.Service) { s.startController(s.cfg) })
	s.eventually("an Event naming the previous address", func() bool {
		return strings.Contains(strings.Join(s.events(ReasonCreated), "\n"), "on its previous address "+up.Spec.ClusterIP)
	})

	s.stopController()
	p := s.waitPolicy(nil)
	p.Annotations[UpstreamIPsAnnotation] = "10.96.0.1;rm -rf"
	if err := s.c.Update(s.ctx(), p); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Delete(s.ctx(), up); err != nil {
		t.Fatal(err)
	}
	s.startController(s.cfg)
	up2 := s.recreatedUpstream(2, up)
	s.eventually("a Warning that the caches need a restart", func() bool {
		return strings.Contains(strings.Join(s.events(ReasonUpstreamAddress), "\n"), "rollout restart daemonset")
	})
	s.waitPolicy(recorded(up2.Spec.ClusterIPs))
}

// TestDualStackUpstreamRecreatedOnItsAddresses: on a dual-stack API
// server, kube-dns-upstream deleted by hand comes back on both its
// addresses, each time within the wait, even when one family's address is
// freed 300 ms after the other (the test holds it, as a slow API server
// does): a create that met one freed and the other not would leave the
// first allocated to nothing until the API server's repair loop, 60 s on.
func TestDualStackUpstreamRecreatedOnItsAddresses(t *testing.T) {
	_, cfg := testenv.ForTestDualStack(t, true)
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := newScenarioOn(t, c, cfg)
	s.healthy()
	kubeDNS := &corev1.Service{}
	if err := c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: s.names.KubeDNSService}, kubeDNS); err != nil {
		t.Fatal(err)
	}
	kubeDNS.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	if err := c.Update(s.ctx(), kubeDNS); err != nil {
		t.Fatal(err)
	}
	s.startController(cfg)
	s.waitPolicy(nil)
	up, err := waitFor(s, func() (*corev1.Service, error) {
		u, err := s.upstream()
		if err == nil && len(u.Spec.ClusterIPs) != 2 {
			return nil, fmt.Errorf("ClusterIPs %v, want two", u.Spec.ClusterIPs)
		}
		return u, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		deleted := time.Now()
		// Hold the IPv6 address a moment, as an IPAddress object the API
		// server has not deleted yet (AlreadyExists: the controller was
		// quicker and has it again).
		hold := func(up *corev1.Service) {
			held := &networkingv1.IPAddress{
				ObjectMeta: metav1.ObjectMeta{Name: up.Spec.ClusterIPs[1]},
				Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{
					Resource: "services", Namespace: s.ns, Name: s.names.UpstreamService,
				}},
			}
			if err := c.Create(s.ctx(), held); err == nil {
				time.Sleep(300 * time.Millisecond)
				if err := c.Delete(s.ctx(), held); err != nil {
					t.Fatal(err)
				}
			} else if !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		up = s.deleteUpstream(i+1, up, hold)
		t.Logf("deletion %d: re-created after %v", i+1, time.Since(deleted).Round(time.Millisecond))
	}
	if notes := s.events(ReasonUpstreamAddress); len(notes) > 0 {
		t.Errorf("address change events %q, want none", notes)
	}
}

// deleteUpstream deletes kube-dns-upstream up (deletion n of a test),
// runs then, if any, and returns the Service the controller re-created,
// after checking it has up's ClusterIPs.
func (s *scenario) deleteUpstream(n int, up *corev1.Service, then func(*corev1.Service)) *corev1.Service {
	s.t.Helper()
	if err := s.c.Delete(s.ctx(), up); err != nil {
		s.t.Fatal(err)
	}
	if then != nil {
		then(up)
	}
	up2 := s.recreatedUpstream(n, up)
	if diff := cmp.Diff(up.Spec.ClusterIPs, up2.Spec.ClusterIPs); diff != "" {
		s.t.Errorf("deletion %d: re-created ClusterIPs (-before +after):\n%s", n, diff)
	}
	return up2
}

// recreatedUpstream waits for the upstream Service that replaces up.
func (s *scenario) recreatedUpstream(n int, up *corev1.Service) *corev1.Service {
	s.t.Helper()
	up2, err := waitFor(s, func() (*corev1.Service, error) {
		u, err := s.upstream()
		if err == nil && u.UID == up.UID {
			return nil, fmt.Errorf("not deleted yet")
		}
		return u, err
	})
	if err != nil {
		s.t.Fatalf("deletion %d: upstream Service not re-created within 20 s: %v", n, err)
	}
	return up2
}

func TestHandEditsAreRepaired(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	p := s.waitPolicy(nil)

	if err := s.c.Delete(s.ctx(), p); err != nil {
		t.Fatal(err)
	}
	p2 := s.waitPolicy(func(q *ciliumv2.CiliumLocalRedirectPolicy) bool { return q.UID != p.UID })

	// The spec is immutable except the description; labels are free to edit.
	p2.Spec.Description = "edited by hand"
	delete(p2.Labels, ManagedByLabel)
	if err := s.c.Update(s.ctx(), p2); err != nil {
		t.Fatal(err)
	}
	s.waitPolicy(func(q *ciliumv2.CiliumLocalRedirectPolicy) bool {
		return q.UID == p2.UID && q.Labels[ManagedByLabel] == ManagedByValue && strings.HasPrefix(q.Spec.Description, "Managed by lrpdns")
	})

	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
	up.Spec.Selector = map[string]string{"k8s-app": "something-else"}
	if err := s.c.Update(s.ctx(), up); err != nil {
		t.Fatal(err)
	}
	s.eventually("the upstream selector restored", func() bool {
		up, err := s.upstream()
		return err == nil && up.Spec.Selector["k8s-app"] == "kube-dns"
	})
	s.waitEvent(ReasonRepaired)
}

// startDraining runs a controller that knows its pod, with drain, on a
// healthy install, and returns its pod and kube-dns-upstream.
func startDraining(t *testing.T, drain time.Duration) (*scenario, *metav1.OwnerReference, *corev1.Service) {
	s := newScenario(t)
	s.healthy()
	self := s.selfPod()
	s.startController(s.cfg, func(o *Options) { o.UpstreamDrain, o.Self = drain, self })
	return s, self, s.waitUpstreamOwnedByPolicy(s.waitPolicy(nil))
}

// TestDaemonSetDeletedRemovesPolicyFirst: the controller deletes the policy
// at once, and keeps kube-dns-upstream, owned by the controller's own pod
// only, while the DaemonSet's pods terminate: they still forward cluster
// names to it. It deletes it after the drain. (Had the controller gone
// first, the garbage collector would take the Service with its pod.)
func TestDaemonSetDeletedRemovesPolicyFirst(t *testing.T) {
	const drain = 3 * time.Second
	s, self, up := startDraining(t, drain)

	if err := s.c.Delete(s.ctx(), s.cacheDaemonSet()); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	s.waitNoPolicy()
	s.eventually("kube-dns-upstream owned by the controller's pod only", func() bool {
		up2, err := s.upstream()
		return err == nil && up2.UID == up.UID && len(up2.OwnerReferences) == 1 && up2.OwnerReferences[0].UID == self.UID && up2.OwnerReferences[0].Kind == "Pod"
	})
	// Still there during the drain...
	time.Sleep(drain / 2)
	if up2, err := s.upstream(); err != nil || up2.UID != up.UID {
		t.Fatalf("upstream Service %v after %v, during the %v drain: %v", up2.UID, time.Since(deleted).Round(time.Millisecond), drain, err)
	}
	// ...and gone after it.
	s.eventually("kube-dns-upstream deleted after the drain", func() bool {
		_, err := s.upstream()
		return apierrors.IsNotFound(err)
	})
	if took := time.Since(deleted); took < drain {
		t.Errorf("upstream Service deleted %v after the DaemonSet, before the %v drain", took.Round(time.Millisecond), drain)
	}
}

// TestDaemonSetDeletedWithoutSelf: a controller that does not know its pod
// (run outside one) leaves kube-dns-upstream to the garbage collector
// (envtest has none), owned by the DaemonSet and the policy as before.
func TestDaemonSetDeletedWithoutSelf(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg, func(o *Options) { o.UpstreamDrain = time.Second })
	p := s.waitPolicy(nil)
	up := s.waitUpstreamOwnedByPolicy(p)
	ds := s.cacheDaemonSet()
	if err := s.c.Delete(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	s.waitNoPolicy()
	time.Sleep(2 * time.Second)
	up2, err := s.upstream()
	if err != nil || up2.UID != up.UID {
		t.Fatalf("upstream Service after the DaemonSet went: %v (uid %v), want it left to the garbage collector", err, up2.UID)
	}
	var owners []string
	for _, r := range up2.OwnerReferences {
		owners = append(owners, r.Kind+"/"+string(r.UID))
	}
	want := []string{"DaemonSet/" + string(ds.UID), ciliumv2.CLRPKindDefinition + "/" + string(p.UID)}
	if diff := cmp.Diff(want, owners); diff != "" {
		t.Errorf("upstream Service owners (-want +got):\n%s", diff)
	}
}

// TestDaemonSetBackDuringDrain: a DaemonSet deleted and applied again (as
// with --cascade=orphan) within the drain finds kube-dns-upstream as it was,
// on its address, and owns it again; nothing deletes it later.
func TestDaemonSetBackDuringDrain(t *testing.T) {
	const drain = 2 * time.Second
	s, self, up := startDraining(t, drain)

	ds := s.cacheDaemonSet()
	if err := s.c.Delete(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	s.waitNoPolicy()
	s.eventually("kube-dns-upstream owned by the controller's pod", func() bool {
		up2, err := s.upstream()
		return err == nil && len(up2.OwnerReferences) == 1 && up2.OwnerReferences[0].UID == self.UID
	})
	s.daemonSet(cacheContainerPorts("dns", "dns-tcp", 5353))
	s.setReady(1)
	ds = s.cacheDaemonSet()
	s.eventually("kube-dns-upstream owned by the new DaemonSet", func() bool {
		up2, err := s.upstream()
		return err == nil && slices.ContainsFunc(up2.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == ds.UID })
	})
	time.Sleep(drain + time.Second)
	up2, err := s.upstream()
	if err != nil || up2.UID != up.UID || up2.Spec.ClusterIP != up.Spec.ClusterIP {
		t.Fatalf("upstream Service after the drain: %v, uid %v (was %v), ClusterIP %v (was %v); want the same Service kept", err, up2.UID, up.UID, up2.Spec.ClusterIP, up.Spec.ClusterIP)
	}
	s.waitPolicy(nil)
}

func TestRestartMakesNoWrites(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	p := s.waitPolicy(nil)
	s.waitUpstreamOwnedByPolicy(p)     // the first controller's last write
	time.Sleep(500 * time.Millisecond) // let it settle
	s.stopController()
	p, err := s.policy()
	if err != nil {
		t.Fatal(err)
	}
	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
	events := len(s.events(ReasonCreated)) + len(s.events(ReasonRepaired)) + len(s.events(ReasonWithdrawn))

	s.writes.Store(0)
	s.reads.Store(0)
	s.startController(s.cfg)
	s.eventually("the restarted controller to reconcile", func() bool { return s.reads.Load() >= 3 })
	time.Sleep(time.Second)

	if n := s.writes.Load(); n != 0 {
		t.Errorf("restarted controller made %d writes in steady state, want 0", n)
	}
	p2, err := s.policy()
	if err != nil || p2.ResourceVersion != p.ResourceVersion {
		t.Errorf("policy resourceVersion %s -> %v (%v), want unchanged", p.ResourceVersion, p2.ResourceVersion, err)
	}
	up2, err := s.upstream()
	if err != nil || up2.ResourceVersion != up.ResourceVersion {
		t.Errorf("upstream Service resourceVersion %s -> %v (%v), want unchanged", up.ResourceVersion, up2.ResourceVersion, err)
	}
	if after := len(s.events(ReasonCreated)) + len(s.events(ReasonRepaired)) + len(s.events(ReasonWithdrawn)); after != events {
		t.Errorf("restart emitted %d change events, want none", after-events)
	}
}

func TestCiliumChecks(t *testing.T) {
	t.Run("local redirect policies disabled", func(t *testing.T) {
		s := newScenario(t)
		s.install("false", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg)
		note := s.waitEvent(ReasonLRPDisabled)
		if !strings.Contains(note, `enable-local-redirect-policy="false"`) || !strings.Contains(note, "cilium-config") {
			t.Errorf("event %q does not name the ConfigMap key and value", note)
		}
		s.waitPolicy(nil) // created anyway: it works once the option is on
	})
	t.Run("socket LB that pins clients", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.ciliumConfig(map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-terminate-pod-connections": "false"})
		s.startController(s.cfg)
		note := s.waitEvent(ReasonSocketLBPinsClients)
		if !strings.Contains(note, "cilium-config") || !strings.Contains(note, `bpf-lb-sock-terminate-pod-connections="false"`) {
			t.Errorf("event %q does not name the ConfigMap and the setting", note)
		}
		s.waitPolicy(nil) // a warning: the redirect serves every other client
	})
	t.Run("socket LB with termination", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.ciliumConfig(map[string]string{"kube-proxy-replacement": "true"})
		s.startController(s.cfg)
		s.waitPolicy(nil)
		s.waitEvent(ReasonCreated)
		if notes := s.events(ReasonSocketLBPinsClients); len(notes) != 0 {
			t.Errorf("events %q with the agent's default termination", notes)
		}
	})
	t.Run("cilium with a known fault", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", "quay.io/cilium/cilium:v1.18.4@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg)
		note := s.waitEvent(ReasonCiliumFault)
		for _, want := range []string{"1.18.4", "cilium/cilium#43080", "fixed in 1.18.6", "no redirect"} {
			if !strings.Contains(note, want) {
				t.Errorf("event %q lacks %q", note, want)
			}
		}
		s.consistentlyNoPolicy(time.Second)
	})
	t.Run("cilium older than the floor", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", "quay.io/cilium/cilium:v1.17.8", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg)
		note := s.waitEvent(ReasonCiliumTooOld)
		if !strings.Contains(note, "1.17.8") || !strings.Contains(note, ciliumFloor) {
			t.Errorf("event %q does not name the version found and the oldest one measured", note)
		}
		s.consistentlyNoPolicy(time.Second)
	})
	t.Run("cilium 1.18 past its faults", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", "quay.io/cilium/cilium:v1.18.11", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg)
		s.waitPolicy(nil)
		if notes := append(s.events(ReasonCiliumFault), s.events(ReasonCiliumTooOld)...); len(notes) != 0 {
			t.Errorf("events %q on a release without known faults", notes)
		}
	})
}

// TestSocketLBRisk: only socket LB in pod namespaces without termination of
// sockets connected to deleted backends is a risk; every key that turns one
// of them off clears it.
func TestSocketLBRisk(t *testing.T) {
	t.Parallel()
	risky := map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-terminate-pod-connections": "false"}
	with := func(k, v string) map[string]string {
		m := maps.Clone(risky)
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]string
		want bool
	}{
		{"kube-proxy replacement, no termination", risky, true},
		{"socket LB without kube-proxy replacement, no termination", with("kube-proxy-replacement", "false"), false},
		{"bpf-lb-sock on, no termination", map[string]string{"bpf-lb-sock": "true", "bpf-lb-sock-terminate-pod-connections": "false"}, true},
		{"strict (Cilium before 1.16)", with("kube-proxy-replacement", "strict"), true},
		{"termination on", with("bpf-lb-sock-terminate-pod-connections", "true"), false},
		{"termination unset (the agent's default: on)", map[string]string{"kube-proxy-replacement": "true"}, false},
		{"socket LB in the host namespace only", with("bpf-lb-sock-hostns-only", "true"), false},
		{"no socket LB", map[string]string{"bpf-lb-sock-terminate-pod-connections": "false"}, false},
	} {
		got := socketLBRisk(tc.cfg)
		if (got != "") != tc.want {
			t.Errorf("%s: %q, want a risk: %v", tc.name, got, tc.want)
		}
		if got != "" && (!strings.Contains(got, "31012") || !strings.Contains(got, "socketLB.terminatePodConnections=true")) {
			t.Errorf("%s: %q does not name the Cilium issue and the setting", tc.name, got)
		}
	}
}

func TestImageVersion(t *testing.T) {
	t.Parallel()
	for image, want := range map[string]string{
		"quay.io/cilium/cilium:v1.20.2":                  "1.20.2",
		"quay.io/cilium/cilium:v1.18.4@sha256:0123":      "1.18.4",
		"localhost:5000/cilium/cilium:v1.19.0-rc.1":      "1.19.0-rc.1",
		"localhost:5000/cilium/cilium@sha256:0123456789": "",
		"cilium/cilium:latest":                           "",
		"cilium":                                         "",
	} {
		v, ok := imageVersion(image)
		got := ""
		if ok {
			got = v.String()
		}
		if got != want {
			t.Errorf("imageVersion(%q) = %q, want %q", image, got, want)
		}
	}
}

// TestAdoptsShippedUpstreamService: the manifests ship kube-dns-upstream so
// it exists before the cache's pods start; the controller adopts it in place.
func TestAdoptsShippedUpstreamService(t *testing.T) {
	s := newScenario(t)
	shipped := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.names.UpstreamService, Namespace: s.ns, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
			},
		},
	}
	s.create(shipped)
	s.healthy()
	s.startController(s.cfg)
	s.waitPolicy(nil)
	ds := s.cacheDaemonSet()
	s.eventually("the shipped Service to be adopted", func() bool {
		up, err := s.upstream()
		return err == nil && len(up.OwnerReferences) > 0
	})
	up, _ := s.upstream()
	if up.UID != shipped.UID || up.Spec.ClusterIP != shipped.Spec.ClusterIP {
		t.Errorf("upstream Service uid %s ip %s, want the shipped one adopted in place (uid %s ip %s)", up.UID, up.Spec.ClusterIP, shipped.UID, shipped.Spec.ClusterIP)
	}
	assertOwnedBy(t, "the adopted upstream Service", up, ds)
}

// TestAddressPolicies: with --redirect-addresses, each address gets a
// policy of its own next to kube-dns's, accepted by the real CRD, created,
// withdrawn and removed with it; an address no longer configured loses
// its policy, and kube-dns's stays as it is.
func TestAddressPolicies(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.setReady(2)
	linkLocal := netip.MustParseAddr("169.254.20.10")
	withAddress := func(o *Options) { o.Addresses = []netip.Addr{linkLocal} }
	s.startController(s.cfg, withAddress)
	s.waitPolicy(nil)
	addressPolicy := func() (*ciliumv2.CiliumLocalRedirectPolicy, error) {
		p := &ciliumv2.CiliumLocalRedirectPolicy{}
		return p, s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: s.names.AddressPolicy(linkLocal)}, p)
	}
	addr, err := waitFor(s, addressPolicy)
	if err != nil {
		t.Fatal(err)
	}
	want := ciliumv2.RedirectFrontend{AddressMatcher: &ciliumv2.Frontend{IP: "169.254.20.10", ToPorts: []ciliumv2.PortInfo{
		{Port: "53", Protocol: "UDP", Name: "dns"}, {Port: "53", Protocol: "TCP", Name: "dns-tcp"}}}}
	if diff := cmp.Diff(want, addr.Spec.RedirectFrontend); diff != "" {
		t.Errorf("address policy frontend (-want +got):\n%s", diff)
	}
	assertOwnedBy(t, "the address policy", addr, s.cacheDaemonSet())
	s.eventually("the address policy's Created event", func() bool {
		return strings.Contains(strings.Join(s.events(ReasonCreated), "\n"), "redirecting address 169.254.20.10 (dns 53/UDP, dns-tcp 53/TCP)")
	})

	// A port change withdraws both until the rollout is done.
	ds := s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", 5354)
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	s.eventually("both policies withdrawn", func() bool {
		_, e1 := s.policy()
		_, e2 := addressPolicy()
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2)
	})
	s.setRollout(2, 2, 2)
	addr2, err := waitFor(s, addressPolicy)
	if err != nil || addr2.UID == addr.UID || addr2.Spec.RedirectBackend.ToPorts[0].Port != "5354" {
		t.Fatalf("address policy after the rollout: %+v, %v; want re-created with backend 5354", addr2.Spec.RedirectBackend, err)
	}
	service := s.waitPolicy(nil)

	// Without the address, its policy goes; kube-dns's stays.
	s.stopController()
	s.startController(s.cfg)
	s.eventually("the address policy removed", func() bool {
		_, err := addressPolicy()
		return apierrors.IsNotFound(err)
	})
	if p, err := s.policy(); err != nil || p.UID != service.UID {
		t.Errorf("kube-dns's policy %v (%v), want still %s", p.UID, err, service.UID)
	}
	if notes := strings.Join(s.events(ReasonRemoved), "\n"); !strings.Contains(notes, s.names.AddressPolicy(linkLocal)+": its address is no longer redirected") {
		t.Errorf("removed events %q do not name the address policy", notes)
	}

	// With it again, then the DaemonSet deleted: both go.
	s.stopController()
	s.startController(s.cfg, withAddress)
	if _, err := waitFor(s, addressPolicy); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Delete(s.ctx(), s.cacheDaemonSet()); err != nil {
		t.Fatal(err)
	}
	s.eventually("both policies removed with the DaemonSet", func() bool {
		_, e1 := s.policy()
		_, e2 := addressPolicy()
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2)
	})
}

// TestEventStormOnStatusUpdates (issue: event storms): with Cilium's local
// redirect policies off, every DaemonSet status update reconciles and says
// so again; the events library keyed each on the DaemonSet's
// resourceVersion, so 40 status updates made 40 Events. One is enough.
func TestEventStormOnStatusUpdates(t *testing.T) {
	s := newScenario(t)
	s.install("false", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))
	s.startController(s.cfg)
	s.waitEvent(ReasonLRPDisabled)
	for i := range 40 {
		s.setRollout(3, 3, int32(i%3)+1) // a status update each time
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the events library writes in batches
	if n := len(s.events(ReasonLRPDisabled)); n != 1 {
		t.Errorf("%d %s Events after 40 status updates, want 1", n, ReasonLRPDisabled)
	}
	created := 0
	for _, note := range s.events(ReasonCreated) {
		if strings.HasPrefix(note, "redirecting") {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d %s Events for the policy, want 1", created, ReasonCreated)
	}
}

// TestRolloutWaitsQuietly (issue: event storms): a 50-node rollout after a
// port change made one WaitingForCache Event per status update (51); one
// per cause is enough, its counts are in the log.
func TestRolloutWaitsQuietly(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	s.waitPolicy(nil)
	ds := s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", 5354)
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	s.waitNoPolicy()
	for updated := int32(0); updated <= 50; updated++ {
		s.setRollout(50, updated, 50)
		time.Sleep(20 * time.Millisecond)
	}
	s.waitPolicy(nil)
	time.Sleep(2 * time.Second)
	rolling := 0
	notes := s.events(ReasonWaiting)
	for _, n := range notes {
		if strings.Contains(n, "is rolling out") {
			rolling++
		}
	}
	if rolling != 1 {
		t.Errorf("%d %s Events for the rollout in 51 status updates, want 1: %q", rolling, ReasonWaiting, notes)
	}
}

// TestKubeDNSWithOnlyUDPPort (issue: kube-dns with only a UDP port): the
// policy redirected dns 53/UDP, kube-dns-upstream copied only 53/UDP, and
// the caches, which forward cluster names over TCP, had nowhere to send
// them. The upstream now carries TCP 53 on CoreDNS's target port.
func TestKubeDNSWithOnlyUDPPort(t *testing.T) {
	s := newScenario(t)
	s.cilium("true", "quay.io/cilium/cilium:v1.20.2")
	s.kubeDNS(dnsServicePortsFixture()[:1])
	s.daemonSet(cacheContainerPorts("dns", "dns-tcp", 5353))
	s.upstreamEndpoints(true)
	s.setReady(1)
	s.startController(s.cfg)
	p := s.waitPolicy(nil)
	if fp := p.Spec.RedirectFrontend.ServiceMatcher.ToPorts; len(fp) != 1 || fp[0].Protocol != "UDP" {
		t.Errorf("frontend %+v, want kube-dns's one UDP port", fp)
	}
	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
	var tcp *corev1.ServicePort
	for i, sp := range up.Spec.Ports {
		if sp.Protocol == corev1.ProtocolTCP && sp.Port == 53 {
			tcp = &up.Spec.Ports[i]
		}
	}
	if tcp == nil || tcp.TargetPort != dnsServicePortsFixture()[0].TargetPort {
		t.Errorf("kube-dns-upstream ports %+v, want a TCP port 53 on kube-dns's UDP target port", up.Spec.Ports)
	}
}

// TestWithdrawalDoesNotWaitForTheUpstream (issue: a withdrawal waits for the
// upstream): with kube-dns-upstream gone and its re-creation refused (an
// admission policy here; a webhook, a quota or a taken address alike), a port change
// left the policy on 5353 for 88 s while the caches rolled to 5354: the
// redirect with no backend the design exists to prevent. The withdrawal
// now comes first. The refusal is an admission policy, as a webhook would.
func TestWithdrawalDoesNotWaitForTheUpstream(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	s.waitPolicy(nil)
	s.refuseUpstreamWrites()
	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.c.Delete(s.ctx(), up); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := s.upstream(); err == nil {
		t.Fatal("kube-dns-upstream was re-created despite the quota: the test cannot show the withdrawal")
	}
	ds := s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", 5354)
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	s.waitNoPolicy()
	if d := time.Since(changed); d > 5*time.Second {
		t.Errorf("the policy was withdrawn %v after the port change, want within 5 s", d.Round(time.Millisecond))
	}
}

// refuseUpstreamWrites has the API server refuse every write of
// kube-dns-upstream in the scenario's namespace, as a webhook would.
func (s *scenario) refuseUpstreamWrites() {
	s.t.Helper()
	name := "refuse-" + s.ns
	s.create(&admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				ResourceNames: []string{s.names.UpstreamService},
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"services"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "the test refuses kube-dns-upstream"}},
		},
	})
	s.create(&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": s.ns}}},
		},
	})
	// The API server takes a moment to load a new policy.
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.names.UpstreamService, Namespace: s.ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 53}}}}
		up, err := s.upstream()
		if err == nil {
			probe = up
			probe.Labels = map[string]string{"lrpdns.test/probe": "1"}
			err = s.c.Update(s.ctx(), probe)
		} else {
			err = s.c.Create(s.ctx(), probe)
			if err == nil {
				_ = s.c.Delete(s.ctx(), probe)
			}
		}
		if err != nil && strings.Contains(err.Error(), "the test refuses") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the admission policy refusing kube-dns-upstream did not take effect: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStuckRolloutIsAWarning (issue: a stuck rollout withholds the redirect
// forever, silently): one node whose old cache pod never finishes
// terminating kept every node off the cache with Normal Events only. Once
// the wait is longer than --withheld-warning, one Warning names that node
// and its pod, and the waiting-since metric says since when.
func TestStuckRolloutIsAWarning(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg, func(o *Options) { o.WithheldWarning = 2 * time.Second })
	s.waitPolicy(nil)
	if got := testutil.ToFloat64(waitingSince); got != 0 {
		t.Errorf("waiting since %v with the redirect in place, want 0", got)
	}
	ds := s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", 5354)
	began := time.Now() // the wait begins at the withdrawal, after this
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	s.waitNoPolicy()
	// node-a runs the new pod, ready; node-b's old pod is stuck
	// terminating (a finalizer nobody removes); node-c's new pod is not
	// ready yet.
	s.cachePod("node-a", ds, true, false)
	s.cachePod("node-b", ds, true, true)
	s.cachePod("node-c", ds, false, false)
	s.setRollout(3, 2, 2)
	note := s.waitEvent(ReasonWithheld)
	if held := time.Since(began); held < 2*time.Second {
		t.Errorf("Warning after %v, want none before --withheld-warning (2s)", held)
	}
	for _, want := range []string{"2 of 3 nodes run the current pod template", "node-b (pod cache-node-b terminating since ", "node-c (pod cache-node-c not ready)"} {
		if !strings.Contains(note, want) {
			t.Errorf("Warning %q does not say %q", note, want)
		}
	}
	if strings.Contains(note, "node-a") {
		t.Errorf("Warning %q names node-a, whose pod is ready and current", note)
	}
	if since := testutil.ToFloat64(waitingSince); since < float64(began.Add(-time.Second).Unix()) || since > float64(time.Now().Unix()) {
		t.Errorf("waiting since %v, want about %d", since, began.Unix())
	}
	s.setRollout(3, 2, 3) // a status update: no second Warning
	time.Sleep(3 * time.Second)
	if n := len(s.events(ReasonWithheld)); n != 1 {
		t.Errorf("%d %s Events in one wait, want 1", n, ReasonWithheld)
	}
	s.setRollout(3, 3, 3)
	s.waitPolicy(nil)
	if got := testutil.ToFloat64(waitingSince); got != 0 {
		t.Errorf("waiting since %v once the redirect is back, want 0", got)
	}
}

// TestTwoInstallsInOneNamespace (issue: two installs in one namespace
// fight): each deleted every managed-by=lrpdns policy in the namespace, 147
// create/delete cycles in 8 s, and both elected a leader on one fixed Lease.
// Side by side, each with its own DaemonSet, policy and upstream names and
// with leader election on, each now keeps its own policy, never deletes the
// other's, and leads on a Lease of its own.
func TestTwoInstallsInOneNamespace(t *testing.T) {
	a := newScenario(t)
	a.healthy()
	b := &scenario{t: t, ns: a.ns, c: a.c, cfg: a.cfg, names: a.names}
	b.names.DaemonSet, b.names.Policy, b.names.UpstreamService = "node-local-dns-b", "node-local-dns-b", "kube-dns-upstream-b"
	b.daemonSet(cacheContainerPorts("dns", "dns-tcp", 5353))
	b.upstreamEndpoints(true)
	b.setReady(1)
	leader := func(o *Options) { o.LeaderElection = true }
	a.startController(a.cfg, leader)
	b.startController(b.cfg, leader)
	pa, pb := a.waitPolicy(nil), b.waitPolicy(nil)
	// Before the change the two deleted each other's policy every few
	// tens of milliseconds.
	time.Sleep(3 * time.Second)
	for _, s := range []struct {
		sc  *scenario
		uid string
	}{{a, string(pa.UID)}, {b, string(pb.UID)}} {
		p, err := s.sc.policy()
		if err != nil || string(p.UID) != s.uid {
			t.Errorf("policy %s: %v, UID %v, want the one first made (%s): the other install deleted it", s.sc.names.Policy, err, p.UID, s.uid)
		}
		lease := &coordinationv1.Lease{}
		if err := a.c.Get(a.ctx(), client.ObjectKey{Namespace: a.ns, Name: s.sc.names.Lease()}, lease); err != nil {
			t.Errorf("the Lease of install %s: %v", s.sc.names.DaemonSet, err)
		} else if ptr.Deref(lease.Spec.HolderIdentity, "") == "" {
			t.Errorf("Lease %s has no holder", lease.Name)
		}
	}
	if a.names.Lease() == b.names.Lease() {
		t.Errorf("both installs elect on Lease %s", a.names.Lease())
	}
}

// TestReadinessFollowsReconciles (issue: health probes that are pings while
// every reconcile fails): with every write of kube-dns-upstream refused,
// /readyz failed nothing. It now fails once reconciles have failed for
// UnreadyAfter, quoting the error, and passes again after one succeeds.
func TestReadinessFollowsReconciles(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.refuseUpstreamWrites()
	addr := dnstest.FreeAddr(t)
	s.startController(s.cfg, func(o *Options) { o.HealthAddr, o.UnreadyAfter = addr, 2*time.Second })
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz/reconcile")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	var code int
	var body string
	s.eventually("/readyz to fail", func() bool {
		code, body = readyz()
		return code == http.StatusInternalServerError
	})
	if !strings.Contains(body, "the test refuses kube-dns-upstream") {
		t.Errorf("/readyz/reconcile said %q, want the reconcile's error", body)
	}
	if _, err := s.upstream(); err == nil {
		t.Fatal("kube-dns-upstream exists: reconciles did not fail, the test shows nothing")
	}
	name := "refuse-" + s.ns
	if err := s.c.Delete(s.ctx(), &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	s.eventually("/readyz to pass once a reconcile succeeds", func() bool {
		code, body = readyz()
		return code == http.StatusOK
	})
	s.waitPolicy(nil)
}

// TestCiliumChangesAreActedOn (issue: Cilium changes are noticed only when
// the DaemonSet changes): after the agent's image moved to v1.18.4 (a
// known-fault range) the policy stayed until an unrelated status update of
// the cache DaemonSet, and cilium-config was read only then too. Both are
// watched now: the policy goes within seconds of the agent's change, comes
// back with a good release, and a ConfigMap change is a Warning at once.
func TestCiliumChangesAreActedOn(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	s.waitPolicy(nil)
	s.setCiliumImage("quay.io/cilium/cilium:v1.18.4")
	changed := time.Now()
	s.waitNoPolicy()
	if d := time.Since(changed); d > 5*time.Second {
		t.Errorf("the policy went %v after Cilium moved to a faulty release, want within 5 s", d.Round(time.Millisecond))
	}
	if note := s.waitEvent(ReasonCiliumFault); !strings.Contains(note, "1.18.4") {
		t.Errorf("event %q does not name the release", note)
	}
	s.setCiliumImage("quay.io/cilium/cilium:v1.20.2")
	s.waitPolicy(nil)
	s.ciliumConfig(map[string]string{"enable-local-redirect-policy": "false"})
	changed = time.Now()
	s.waitEvent(ReasonLRPDisabled)
	if d := time.Since(changed); d > 5*time.Second {
		t.Errorf("the Warning came %v after cilium-config changed, want within 5 s", d.Round(time.Millisecond))
	}
}

// TestCiliumImageWithoutVersion (issue: a digest-only agent image skips the
// version check with a log line only): it is a Warning that names the image
// and --cilium-version; given, that release is checked.
func TestCiliumImageWithoutVersion(t *testing.T) {
	const digestOnly = "mirror.example/cilium/cilium@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	t.Run("unknown", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", digestOnly, cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg)
		note := s.waitEvent(ReasonCiliumVersionUnknown)
		for _, want := range []string{digestOnly, "--cilium-version", "controller.ciliumVersion"} {
			if !strings.Contains(note, want) {
				t.Errorf("event %q lacks %q", note, want)
			}
		}
		s.waitPolicy(nil) // unknown is not faulty: a Warning, and the redirect
	})
	t.Run("given", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", digestOnly, cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg, func(o *Options) { o.CiliumVersion = "v1.18.4" })
		if note := s.waitEvent(ReasonCiliumFault); !strings.Contains(note, "1.18.4") {
			t.Errorf("event %q does not name the release given", note)
		}
		s.consistentlyNoPolicy(time.Second)
	})
}

// setCiliumImage sets the image of Cilium's agent DaemonSet.
func (s *scenario) setCiliumImage(image string) {
	s.t.Helper()
	ds := &appsv1.DaemonSet{}
	if err := s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: "cilium"}, ds); err != nil {
		s.t.Fatal(err)
	}
	ds.Spec.Template.Spec.Containers[0].Image = image
	if err := s.c.Update(s.ctx(), ds); err != nil {
		s.t.Fatal(err)
	}
}

// TestYoungUpstreamUnderClockSkew (issue: clock skew against the 5 s
// settle): the settle was measured from the Service's creation timestamp,
// the API server's clock; a controller clock an hour ahead found the
// upstream it had just created an hour old and redirected at once. The
// settle now runs on the controller's own clock from when it first saw the
// Service.
func TestYoungUpstreamUnderClockSkew(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg, func(o *Options) {
		o.UpstreamSettle = 3 * time.Second
		o.clock = skewedClock{time.Hour}
	})
	if _, err := waitFor(s, func() (*corev1.Service, error) { return s.upstream() }); err != nil {
		t.Fatal(err)
	}
	s.consistentlyNoPolicy(2 * time.Second)
	s.waitPolicy(nil)
}

// skewedClock is the real clock moved by d.
type skewedClock struct{ d time.Duration }

func (c skewedClock) Now() time.Time                  { return time.Now().Add(c.d) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
