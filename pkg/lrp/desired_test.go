package lrp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pure tests of the desired objects: no API server.

func kubeDNSFixture(ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"k8s-app": "kube-dns"}, Ports: ports},
	}
}

func dsFixture(ports ...corev1.ContainerPort) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", Namespace: "kube-system", UID: "ds-uid"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "node-local-dns"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "node-cache", Ports: ports}}}},
		},
	}
}

var (
	udp53       = corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)}
	tcp53       = corev1.ServicePort{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)}
	metrics9153 = corev1.ServicePort{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9153}
	cacheUDP    = corev1.ContainerPort{Name: "dns", Protocol: corev1.ProtocolUDP, ContainerPort: 5353}
	cacheTCP    = corev1.ContainerPort{Name: "dns-tcp", ContainerPort: 5353} // protocol defaults to TCP
)

func TestDesiredPolicyErrors(t *testing.T) {
	t.Parallel()
	noSelector := dsFixture(cacheUDP, cacheTCP)
	noSelector.Spec.Selector = &metav1.LabelSelector{}
	for _, tc := range []struct {
		name    string
		kubeDNS *corev1.Service
		ds      *appsv1.DaemonSet
		want    []string
	}{
		{"no DNS port", kubeDNSFixture(metrics9153), dsFixture(cacheUDP, cacheTCP), []string{"has no DNS port", `"metrics" 9153/TCP`}},
		{"unnamed kube-dns port", kubeDNSFixture(corev1.ServicePort{Protocol: corev1.ProtocolUDP, Port: 53}), dsFixture(cacheUDP), []string{"port 53/UDP has no name", "name it"}},
		{"no container port of that name", kubeDNSFixture(udp53, tcp53), dsFixture(cacheUDP), []string{`port "dns-tcp" (53/TCP) has no containerPort named "dns-tcp"`, `"dns" 5353/UDP`, `Name the cache's DNS container ports "dns" (UDP) and "dns-tcp" (TCP)`}},
		{"Helm chart names", kubeDNSFixture(
			corev1.ServicePort{Name: "udp-53", Protocol: corev1.ProtocolUDP, Port: 53}, corev1.ServicePort{Name: "tcp-53", Protocol: corev1.ProtocolTCP, Port: 53}),
			dsFixture(cacheUDP, cacheTCP), []string{`"udp-53" (UDP) and "tcp-53" (TCP)`, "manifests/components/kube-dns-udp-53"}},
		{"name matches, protocol does not", kubeDNSFixture(udp53), dsFixture(corev1.ContainerPort{Name: "dns", Protocol: corev1.ProtocolTCP, ContainerPort: 5353}), []string{`no containerPort named "dns" with protocol UDP`}},
		{"no pod selector", kubeDNSFixture(udp53, tcp53), noSelector, []string{"has no pod selector"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := DesiredPolicy(DefaultNames(), tc.kubeDNS, tc.ds)
			var pe *PortError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v, want a *PortError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestDesiredPolicy(t *testing.T) {
	t.Parallel()
	p, err := DesiredPolicy(DefaultNames(), kubeDNSFixture(metrics9153, tcp53, udp53), dsFixture(cacheTCP, cacheUDP))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantSpec("kube-system", "dns", "dns-tcp", "5353"), p.Spec); diff != "" {
		t.Errorf("spec (-want +got), UDP first whatever the Service's order:\n%s", diff)
	}
	if p.Spec.SkipRedirectFromBackend {
		t.Error("skipRedirectFromBackend set; it is not measured to work here")
	}
}

func TestDesiredUpstreamService(t *testing.T) {
	t.Parallel()
	kd := kubeDNSFixture(udp53, tcp53, metrics9153)
	ds := dsFixture(cacheUDP, cacheTCP)
	t.Run("without a policy: owned by the DaemonSet", func(t *testing.T) {
		t.Parallel()
		svc, err := DesiredUpstreamService(DefaultNames(), kd, ds, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(svc.OwnerReferences) != 1 || svc.OwnerReferences[0].UID != ds.UID {
			t.Errorf("owners %+v, want the DaemonSet only", svc.OwnerReferences)
		}
		if len(svc.Spec.Ports) != 2 {
			t.Errorf("ports %+v, want the two DNS ports only", svc.Spec.Ports)
		}
	})
	t.Run("with our policy: owned by it too, not as controller", func(t *testing.T) {
		t.Parallel()
		p := &ciliumv2.CiliumLocalRedirectPolicy{ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", UID: "p-uid", Labels: map[string]string{ManagedByLabel: ManagedByValue}}}
		svc, err := DesiredUpstreamService(DefaultNames(), kd, ds, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(svc.OwnerReferences) != 2 || svc.OwnerReferences[1].UID != "p-uid" || svc.OwnerReferences[1].Controller != nil {
			t.Errorf("owners %+v, want the DaemonSet and the policy", svc.OwnerReferences)
		}
	})
	// Issue: kube-dns with only a UDP port gave an upstream with only UDP,
	// while the caches forward cluster names over TCP: every miss failed.
	t.Run("kube-dns with only UDP: the upstream adds TCP 53 on the same target", func(t *testing.T) {
		t.Parallel()
		svc, err := DesiredUpstreamService(DefaultNames(), kubeDNSFixture(udp53, metrics9153), ds, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []corev1.ServicePort{
			{Name: udp53.Name, Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: udp53.TargetPort},
			{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: udp53.TargetPort},
		}
		if diff := cmp.Diff(want, svc.Spec.Ports); diff != "" {
			t.Errorf("ports (-want +got):\n%s", diff)
		}
	})
	t.Run("someone else's policy of that name is no owner", func(t *testing.T) {
		t.Parallel()
		p := &ciliumv2.CiliumLocalRedirectPolicy{ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", UID: "p-uid"}}
		svc, _ := DesiredUpstreamService(DefaultNames(), kd, ds, p)
		if len(svc.OwnerReferences) != 1 {
			t.Errorf("owners %+v, want the DaemonSet only", svc.OwnerReferences)
		}
	})
	for _, tc := range []struct {
		name    string
		kubeDNS *corev1.Service
		want    string
	}{
		{"no DNS port", kubeDNSFixture(metrics9153), "has no DNS port"},
		{"no selector", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{udp53}}}, "has no selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := DesiredUpstreamService(DefaultNames(), tc.kubeDNS, ds, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestDesiredAddressPolicy(t *testing.T) {
	t.Parallel()
	n := DefaultNames()
	kd, ds := kubeDNSFixture(udp53, tcp53, metrics9153), dsFixture(cacheUDP, cacheTCP)
	service, err := DesiredPolicy(n, kd, ds)
	if err != nil {
		t.Fatal(err)
	}
	for addr, name := range map[string]string{
		"169.254.20.10": "node-local-dns-169-254-20-10",
		"169.254.25.10": "node-local-dns-169-254-25-10",
		"fd00:20::10":   "node-local-dns-fd00-20--10",
	} {
		p, err := DesiredAddressPolicy(n, kd, ds, netip.MustParseAddr(addr))
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		want := ciliumv2.RedirectFrontend{AddressMatcher: &ciliumv2.Frontend{IP: addr, ToPorts: []ciliumv2.PortInfo{
			{Port: "53", Protocol: "UDP", Name: "dns"}, {Port: "53", Protocol: "TCP", Name: "dns-tcp"}}}}
		if p.Name != name || p.Namespace != "kube-system" {
			t.Errorf("%s: policy %s/%s, want kube-system/%s", addr, p.Namespace, p.Name, name)
		}
		if diff := cmp.Diff(want, p.Spec.RedirectFrontend); diff != "" {
			t.Errorf("%s: frontend (-want +got):\n%s", addr, diff)
		}
		if diff := cmp.Diff(service.Spec.RedirectBackend, p.Spec.RedirectBackend); diff != "" {
			t.Errorf("%s: backend differs from the Service policy's (-service +address):\n%s", addr, diff)
		}
		if !strings.Contains(p.Spec.Description, addr) || p.Labels[ManagedByLabel] != ManagedByValue || len(p.OwnerReferences) != 1 {
			t.Errorf("%s: description %q, labels %v, owners %v", addr, p.Spec.Description, p.Labels, p.OwnerReferences)
		}
	}
	for _, bad := range []string{"0.0.0.0", "127.0.0.1", "::1", "224.0.0.1", "fe80::1%eth0"} {
		if _, err := DesiredAddressPolicy(n, kd, ds, netip.MustParseAddr(bad)); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v, want a refusal naming it", bad, err)
		}
	}
	// Ports that cannot match are refused as for the Service's policy.
	var pe *PortError
	if _, err := DesiredAddressPolicy(n, kd, dsFixture(cacheUDP), netip.MustParseAddr("169.254.20.10")); !errors.As(err, &pe) {
		t.Errorf("cache without dns-tcp: %v, want a *PortError", err)
	}
}
