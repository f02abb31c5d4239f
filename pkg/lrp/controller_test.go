package lrp

import (
	"strings"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

func assertOwnedBy(t *testing.T, what string, obj client.Object, ds *appsv1.DaemonSet) {
	t.Helper()
	refs := obj.GetOwnerReferences()
	if len(refs) != 1 || refs[0].UID != ds.UID || refs[0].Kind != "DaemonSet" || refs[0].Controller == nil || !*refs[0].Controller {
		t.Errorf("%s owner references = %+v, want the DaemonSet %s (uid %s) as controller, so deleting it collects %s", what, refs, ds.Name, ds.UID, what)
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

	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
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
	if note := s.waitEvent(ReasonCreated); !strings.Contains(note, "node-local-dns") && !strings.Contains(note, s.names.UpstreamService) {
		t.Errorf("Created event %q names neither object", note)
	}
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

func TestPortChangeRecreatesPolicy(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	old := s.waitPolicy(nil)

	// A new cache port: the backend is immutable, so the policy is re-created.
	ds := s.cacheDaemonSet()
	ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", 5354)
	if err := s.c.Update(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	p := s.waitPolicy(func(p *ciliumv2.CiliumLocalRedirectPolicy) bool { return p.UID != old.UID })
	if diff := cmp.Diff(wantSpec(s.ns, "dns", "dns-tcp", "5354"), p.Spec); diff != "" {
		t.Errorf("re-created policy spec (-want +got):\n%s", diff)
	}
	s.waitEvent(ReasonRecreated)

	// kube-dns's port names change (and the cache's with them): re-created again.
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
	p2 := s.waitPolicy(func(q *ciliumv2.CiliumLocalRedirectPolicy) bool {
		return q.UID != p.UID && q.Spec.RedirectFrontend.ServiceMatcher.ToPorts[0].Name == "dns-udp"
	})
	if got := p2.Spec.RedirectBackend.ToPorts[0]; got.Name != "dns-udp" || got.Port != "5354" {
		t.Errorf("backend UDP port = %+v, want dns-udp 5354", got)
	}
	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
	s.eventually("the upstream Service to follow kube-dns's port names", func() bool {
		up, err = s.upstream()
		return err == nil && up.Spec.Ports[0].Name == "dns-udp"
	})
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

func TestDaemonSetDeletedRemovesEverything(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	s.waitPolicy(nil)

	ds := s.cacheDaemonSet()
	if err := s.c.Delete(s.ctx(), ds); err != nil {
		t.Fatal(err)
	}
	// envtest has no garbage collector: this is the controller's own doing.
	s.waitNoPolicy()
	s.eventually("no upstream Service", func() bool {
		_, err := s.upstream()
		return err != nil && client.IgnoreNotFound(err) == nil
	})
}

func TestRestartMakesNoWrites(t *testing.T) {
	s := newScenario(t)
	s.healthy()
	s.startController(s.cfg)
	p := s.waitPolicy(nil)
	up, err := s.upstream()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the first controller settle
	s.stopController()
	events := len(s.events(ReasonCreated)) + len(s.events(ReasonRepaired)) + len(s.events(ReasonRecreated))

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
	if after := len(s.events(ReasonCreated)) + len(s.events(ReasonRepaired)) + len(s.events(ReasonRecreated)); after != events {
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
	t.Run("cilium older than 1.19", func(t *testing.T) {
		s := newScenario(t)
		s.install("true", "quay.io/cilium/cilium:v1.18.4@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", cacheContainerPorts("dns", "dns-tcp", 5353))
		s.startController(s.cfg)
		note := s.waitEvent(ReasonCiliumTooOld)
		if !strings.Contains(note, "1.18.4") || !strings.Contains(note, "1.19.0") {
			t.Errorf("event %q does not name the version found and the one needed", note)
		}
		s.consistentlyNoPolicy(time.Second)
	})
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
		return err == nil && len(up.OwnerReferences) == 1
	})
	up, _ := s.upstream()
	if up.UID != shipped.UID || up.Spec.ClusterIP != shipped.Spec.ClusterIP {
		t.Errorf("upstream Service uid %s ip %s, want the shipped one adopted in place (uid %s ip %s)", up.UID, up.Spec.ClusterIP, shipped.UID, shipped.Spec.ClusterIP)
	}
	assertOwnedBy(t, "the adopted upstream Service", up, ds)
}
