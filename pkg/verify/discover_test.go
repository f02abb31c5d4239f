package verify

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/internal/testenv"
)

// apiServer is a real kube-apiserver and etcd with the CLRP CRD, for
// Discover; nil when KUBEBUILDER_ASSETS is unset.
var apiServer client.Client

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			return m.Run()
		}
		env, cfg, err := testenv.Start(true)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer env.Stop() //nolint:errcheck // best effort at exit
		s := runtime.NewScheme()
		_ = clientgoscheme.AddToScheme(s)
		_ = ciliumv2.AddToScheme(s)
		if apiServer, err = client.New(cfg, client.Options{Scheme: s}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needAPIServer(t *testing.T) (client.Client, string) {
	t.Helper()
	if testing.Short() || apiServer == nil {
		t.Skip("needs kube-apiserver + etcd (make test); skipped with -short or without KUBEBUILDER_ASSETS")
	}
	ns := "verify-" + rand.String(6)
	if err := apiServer.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return apiServer, ns
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func dnsService(ns, name string, selector map[string]string, target intstr.IntOrString) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{
			{Name: "udp-53", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: target},
			{Name: "tcp-53", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: target},
			{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9153},
		}},
	}
}

// TestDiscoverFromPolicy: an RKE2-like cluster, kube-dns named
// rke2-coredns-rke2-coredns with target port 1053, and cache pods with
// their own labels on port 5300: verify reads all of it from the policy and
// the Service it redirects.
func TestDiscoverFromPolicy(t *testing.T) {
	c, ns := needAPIServer(t)
	create(t, c, dnsService(ns, "rke2-coredns-rke2-coredns", map[string]string{"app.kubernetes.io/name": "rke2-coredns", "k8s-app": "kube-dns"}, intstr.FromInt32(1053)))
	create(t, c, &ciliumv2.CiliumLocalRedirectPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", Namespace: ns},
		Spec: ciliumv2.CiliumLocalRedirectPolicySpec{
			RedirectFrontend: ciliumv2.RedirectFrontend{ServiceMatcher: &ciliumv2.ServiceInfo{
				Name: "rke2-coredns-rke2-coredns", Namespace: ns,
				ToPorts: []ciliumv2.PortInfo{{Port: "53", Protocol: "UDP", Name: "udp-53"}, {Port: "53", Protocol: "TCP", Name: "tcp-53"}},
			}},
			RedirectBackend: ciliumv2.RedirectBackend{
				LocalEndpointSelector: slimv1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "dns-cache"}},
				ToPorts:               []ciliumv2.PortInfo{{Port: "5300", Protocol: "UDP", Name: "udp-53"}, {Port: "5300", Protocol: "TCP", Name: "tcp-53"}},
			},
		},
	})
	n := DefaultNames()
	n.Namespace = ns
	got, note, err := Discover(t.Context(), c, n)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.CacheNamespace, want.KubeDNSNamespace = ns, ns
	want.CacheSelector = "k8s:app.kubernetes.io/name=dns-cache"
	want.KubeDNSSelector = "k8s:app.kubernetes.io/name=rke2-coredns,k8s:k8s-app=kube-dns"
	want.CachePort, want.KubeDNSPorts = 5300, []int{1053}
	if got.RedirectCreated.IsZero() || time.Since(got.RedirectCreated) > time.Minute {
		t.Errorf("RedirectCreated %v, want the policy's creation a moment ago", got.RedirectCreated)
	}
	want.RedirectCreated = got.RedirectCreated
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("discovered config (-want +got):\n%s", diff)
	}
	if note != "" {
		t.Errorf("note %q, want none", note)
	}
}

// TestDiscoverWithoutPolicy: no redirect installed. verify still checks,
// against the DaemonSet's selector, and says why.
func TestDiscoverWithoutPolicy(t *testing.T) {
	c, ns := needAPIServer(t)
	create(t, c, dnsService(ns, "kube-dns", map[string]string{"k8s-app": "kube-dns"}, intstr.FromString("dns")))
	labels := map[string]string{"k8s-app": "node-local-dns"}
	create(t, c, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}},
		},
	})
	n := DefaultNames()
	n.Namespace = ns
	got, note, err := Discover(t.Context(), c, n)
	if err != nil {
		t.Fatal(err)
	}
	if got.CacheSelector != "k8s:k8s-app=node-local-dns" || got.CacheNamespace != ns || got.KubeDNSSelector != "k8s:k8s-app=kube-dns" {
		t.Errorf("config %+v, want the DaemonSet's and kube-dns's selectors in %s", got, ns)
	}
	for _, want := range []string{"no CiliumLocalRedirectPolicy " + ns + "/node-local-dns", `named target port "dns": assuming 53`} {
		if !strings.Contains(note, want) {
			t.Errorf("note %q does not say %q", note, want)
		}
	}
}
