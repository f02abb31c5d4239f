package manifests

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/cmd/lrpdns/app"
	nodecacheapp "github.com/lrpdns/lrpdns/cmd/node-cache/app"
	"github.com/lrpdns/lrpdns/internal/testenv"
	"github.com/lrpdns/lrpdns/pkg/lrp"
)

const root = "../../manifests"

func render(t *testing.T, components ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := Render(root, components...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func decode(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	v, err := Typed[T](objs, kind, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInstallYAMLIsUpToDate(t *testing.T) {
	t.Parallel()
	want, err := Render(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, body, ok := bytes.Cut(got, []byte("---\n")); !ok || !bytes.Equal(body, want) {
		t.Errorf("manifests/install.yaml is out of date: run make generate")
	}
}

// TestAcceptedByAPIServer applies every rendered object, base and
// components, with server-side dry-run to a real kube-apiserver.
func TestAcceptedByAPIServer(t *testing.T) {
	_, cfg := testenv.ForTest(t, true)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs := render(t, "components/prometheus", "components/grafana-dashboard", "components/network-policy")
	applied, want := 0, 0
	for _, u := range objs {
		if u.GetAPIVersion() == "monitoring.coreos.com/v1" {
			continue // the Prometheus Operator's CRDs are not part of this cluster
		}
		want++
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("lrpdns-test"), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			t.Errorf("%s %s/%s rejected: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
			continue
		}
		applied++
	}
	if applied != want || want < 10 {
		t.Errorf("%d of %d objects accepted, want all of the base's 7, the dashboard and the 2 policies", applied, want)
	}
}

// stockKubeDNS is the kube-dns Service as distributions ship it.
func stockKubeDNS() *corev1.Service {
	kubeDNS := &corev1.Service{}
	kubeDNS.Name, kubeDNS.Namespace = "kube-dns", "kube-system"
	kubeDNS.Spec.Selector = map[string]string{"k8s-app": "kube-dns"}
	kubeDNS.Spec.Ports = []corev1.ServicePort{
		{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
		{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
		{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9153, TargetPort: intstr.FromInt32(9153)},
	}
	return kubeDNS
}

func hardened(t *testing.T, what string, pod corev1.PodSpec) {
	t.Helper()
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s shares a host namespace", what)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s pod securityContext = %+v, want runAsNonRoot and seccomp RuntimeDefault", what, psc)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			(sc.Privileged != nil && *sc.Privileged) || sc.Capabilities == nil ||
			!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s container %s securityContext = %+v, want no privilege escalation, read-only root, drop ALL, add nothing", what, c.Name, sc)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s container %s lacks a readiness or liveness probe", what, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s container %s resources = %+v, want CPU and memory requests and a memory limit", what, c.Name, c.Resources)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("%s container %s binds host port %d", what, c.Name, p.HostPort)
			}
		}
	}
}

func TestNodeCacheDaemonSetSafety(t *testing.T) {
	t.Parallel()
	ds := typed[appsv1.DaemonSet](t, render(t), "DaemonSet", "node-local-dns")
	pod := ds.Spec.Template.Spec
	hardened(t, "DaemonSet", pod)
	if pod.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy = %q, want Default (the node's resolvers)", pod.DNSPolicy)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool { return tl.Operator == corev1.TolerationOpExists && tl.Key == "" }) {
		t.Errorf("tolerations = %+v, want one tolerating every taint", pod.Tolerations)
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxSurge == nil || *ru.MaxSurge != intstr.FromInt32(1) || ru.MaxUnavailable == nil || *ru.MaxUnavailable != intstr.FromInt32(0) {
		t.Errorf("rollingUpdate = %+v, want maxSurge 1, maxUnavailable 0", ru)
	}
	c := pod.Containers[0]
	if p := c.ReadinessProbe.HTTPGet; p == nil || p.Path != "/ready" || p.Port != intstr.FromInt32(8181) {
		t.Errorf("readiness probe = %+v, want GET /ready on 8181", c.ReadinessProbe)
	}
	if p := c.LivenessProbe.HTTPGet; p == nil || p.Path != "/health" || p.Port != intstr.FromInt32(8080) {
		t.Errorf("liveness probe = %+v, want GET /health on 8080", c.LivenessProbe)
	}
	// Readiness must go down (period x threshold) well inside the lameduck
	// period, and the grace period must outlast it.
	lameduck := 5 * time.Second
	if slices.Contains(c.Args, "--lameduck=5s") == false {
		t.Errorf("args %v: want --lameduck=5s", c.Args)
	}
	notReadyAfter := time.Duration(c.ReadinessProbe.PeriodSeconds*c.ReadinessProbe.FailureThreshold) * time.Second
	if notReadyAfter >= lameduck || pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= lameduck {
		t.Errorf("readiness off after %v, lameduck %v, grace %v s: want readiness off first and the grace period longer",
			notReadyAfter, lameduck, ptr.Deref(pod.TerminationGracePeriodSeconds, -1))
	}
	var optional bool
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "kube-dns" && v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
			optional = true
		}
	}
	if !optional {
		t.Errorf("the kube-dns ConfigMap is not mounted as optional")
	}
	for _, p := range c.Ports {
		if p.ContainerPort < 1024 {
			t.Errorf("port %s %d is privileged; the cache runs with no capability", p.Name, p.ContainerPort)
		}
	}
}

// TestPortsMatchWhatTheControllerWrites builds the redirect from the shipped
// DaemonSet and a stock kube-dns Service, as the controller does.
func TestPortsMatchWhatTheControllerWrites(t *testing.T) {
	t.Parallel()
	ds := typed[appsv1.DaemonSet](t, render(t), "DaemonSet", "node-local-dns")
	p, err := lrp.DesiredPolicy(lrp.DefaultNames(), stockKubeDNS(), ds)
	if err != nil {
		t.Fatalf("the controller cannot build a redirect for the shipped DaemonSet: %v", err)
	}
	for _, port := range p.Spec.RedirectBackend.ToPorts {
		if port.Port != "5353" {
			t.Errorf("backend port %+v, want 5353", port)
		}
	}
	if ds.Name != lrp.DefaultNames().DaemonSet || ds.Namespace != lrp.DefaultNames().Namespace {
		t.Errorf("DaemonSet %s/%s, want the controller's default %s/%s", ds.Namespace, ds.Name, lrp.DefaultNames().Namespace, lrp.DefaultNames().DaemonSet)
	}
}

func TestControllerDeploymentSafety(t *testing.T) {
	t.Parallel()
	objs := render(t)
	d := typed[appsv1.Deployment](t, objs, "Deployment", "lrpdns-controller")
	hardened(t, "Deployment", d.Spec.Template.Spec)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--leader-elect=true") {
		t.Errorf("args %v: want --leader-elect=true", args)
	}
	sa := typed[corev1.ServiceAccount](t, objs, "ServiceAccount", d.Spec.Template.Spec.ServiceAccountName)
	if sa.Namespace != "kube-system" {
		t.Errorf("ServiceAccount in %s", sa.Namespace)
	}
	for _, u := range objs {
		if strings.HasPrefix(u.GetKind(), "Cluster") {
			t.Errorf("%s %s: the controller needs no cluster-wide permission", u.GetKind(), u.GetName())
		}
	}
}

// TestContainerArgsParse runs the shipped arguments through the binaries'
// own flag parsing.
func TestContainerArgsParse(t *testing.T) {
	objs := render(t)
	ds := typed[appsv1.DaemonSet](t, objs, "DaemonSet", "node-local-dns")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.99.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBE_DNS_UPSTREAM_SERVICE_HOST", "10.96.0.11")
	args := append([]string{"render"}, ds.Spec.Template.Spec.Containers[0].Args...)
	args = append(args, "--resolv-conf", resolv)
	var out, errs bytes.Buffer
	if err := nodecacheapp.Run(context.Background(), args, &out, &errs); err != nil {
		t.Errorf("node-cache %v: %v\n%s", args, err, errs.String())
	}
	if !strings.Contains(out.String(), ".:5353 {") {
		t.Errorf("node-cache with the shipped args does not serve port 5353:\n%s", out.String())
	}

	d := typed[appsv1.Deployment](t, objs, "Deployment", "lrpdns-controller")
	cargs := append(slices.Clone(d.Spec.Template.Spec.Containers[0].Args), "-h") // parse every flag, then stop
	if err := app.Run(context.Background(), cargs, io.Discard, io.Discard); err != nil {
		t.Errorf("lrpdns %v: %v", cargs, err)
	}
}

// TestUpstreamServiceNotShipped: kube-dns-upstream is the controller's,
// owned by the DaemonSet and the policy, so the garbage collector removes it
// only after both. Shipped, `kubectl delete -k` (which deletes Services
// before DaemonSets) would remove it while clients are still redirected to
// caches forwarding to it. A cache pod that starts before the controller
// created it finds it through kube-dns, in its own namespace.
func TestUpstreamServiceNotShipped(t *testing.T) {
	t.Parallel()
	objs := render(t)
	n := lrp.DefaultNames()
	for _, u := range objs {
		if u.GetKind() == "Service" && u.GetName() == n.UpstreamService {
			t.Errorf("Service %s is shipped; kubectl delete would remove it before the DaemonSet", n.UpstreamService)
		}
	}
	ds := typed[appsv1.DaemonSet](t, objs, "DaemonSet", n.DaemonSet)
	var ns *corev1.EnvVar
	for i, e := range ds.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "NODE_CACHE_NAMESPACE" {
			ns = &ds.Spec.Template.Spec.Containers[0].Env[i]
		}
	}
	if ns == nil || ns.ValueFrom == nil || ns.ValueFrom.FieldRef == nil || ns.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("NODE_CACHE_NAMESPACE = %+v, want the pod's namespace from metadata.namespace", ns)
	}
	if !ptr.Deref(ds.Spec.Template.Spec.EnableServiceLinks, true) {
		t.Error("enableServiceLinks is false: the cache reads kube-dns's and kube-dns-upstream's addresses from service links")
	}
}

// TestKubeDNSFlavours: for each kube-dns as distributions ship it, the
// install with its component gives the controller a redirect it can build
// (no PortMismatch), and both binaries accept the changed arguments. Without
// the component, the same kube-dns is a PortMismatch.
func TestKubeDNSFlavours(t *testing.T) {
	helmChart := func(name string) *corev1.Service {
		s := stockKubeDNS()
		s.Name = name
		s.Spec.Ports[0].Name, s.Spec.Ports[1].Name = "udp-53", "tcp-53"
		return s
	}
	for _, tc := range []struct {
		name, component, kubeDNSArg string
		kubeDNS                     *corev1.Service
	}{
		{"kubeadm", "", "", stockKubeDNS()},
		{"CoreDNS Helm chart", "components/kube-dns-udp-53", "", helmChart("kube-dns")},
		{"RKE2", "components/rke2", "--kube-dns-service=rke2-coredns-rke2-coredns", helmChart("rke2-coredns-rke2-coredns")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var components []string
			if tc.component != "" {
				components = append(components, tc.component)
				if _, err := lrp.DesiredPolicy(lrp.DefaultNames(), tc.kubeDNS, typed[appsv1.DaemonSet](t, render(t), "DaemonSet", "node-local-dns")); err == nil {
					t.Errorf("without %s the controller builds a redirect for this kube-dns; want a PortMismatch", tc.component)
				}
			}
			objs := render(t, components...)
			ds := typed[appsv1.DaemonSet](t, objs, "DaemonSet", "node-local-dns")
			p, err := lrp.DesiredPolicy(lrp.DefaultNames(), tc.kubeDNS, ds)
			if err != nil {
				t.Fatalf("the controller cannot build the redirect: %v", err)
			}
			if got := p.Spec.RedirectFrontend.ServiceMatcher.ToPorts[0].Name; got != tc.kubeDNS.Spec.Ports[0].Name {
				t.Errorf("frontend port %q, want %q", got, tc.kubeDNS.Spec.Ports[0].Name)
			}
			d := typed[appsv1.Deployment](t, objs, "Deployment", "lrpdns-controller")
			for what, args := range map[string][]string{"DaemonSet": ds.Spec.Template.Spec.Containers[0].Args, "controller": d.Spec.Template.Spec.Containers[0].Args} {
				if tc.kubeDNSArg != "" && !slices.Contains(args, tc.kubeDNSArg) {
					t.Errorf("%s args %v lack %s", what, args, tc.kubeDNSArg)
				}
			}
			cargs := append(slices.Clone(d.Spec.Template.Spec.Containers[0].Args), "-h")
			if err := app.Run(context.Background(), cargs, io.Discard, io.Discard); err != nil {
				t.Errorf("lrpdns %v: %v", cargs, err)
			}
			resolv := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(resolv, []byte("nameserver 10.99.0.1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"render"}, ds.Spec.Template.Spec.Containers[0].Args...), "--resolv-conf", resolv, "--cluster-dns", "10.96.0.11")
			if err := nodecacheapp.Run(context.Background(), args, io.Discard, io.Discard); err != nil {
				t.Errorf("node-cache %v: %v", args, err)
			}
		})
	}
}

// TestLinkLocalComponent: the component makes the controller redirect
// 169.254.20.10 too, with a value the controller accepts.
func TestLinkLocalComponent(t *testing.T) {
	d := typed[appsv1.Deployment](t, render(t, "components/link-local"), "Deployment", "lrpdns-controller")
	var value string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--redirect-addresses="); ok {
			value = v
		}
	}
	a, err := netip.ParseAddr(value)
	if err == nil {
		err = lrp.CheckAddress(a)
	}
	if err != nil || value != "169.254.20.10" {
		t.Errorf("controller --redirect-addresses=%q (%v), want 169.254.20.10", value, err)
	}
	cargs := append(slices.Clone(d.Spec.Template.Spec.Containers[0].Args), "-h")
	if err := app.Run(context.Background(), cargs, io.Discard, io.Discard); err != nil {
		t.Errorf("lrpdns %v: %v", cargs, err)
	}
}

// TestBesideClassic: with the beside-classic component, nothing lrpdns
// applies has the name of an object of classic NodeLocal DNSCache (as
// e2e/lab/classic has them), and no selector of lrpdns's matches classic's
// pods, so a ready classic pod never counts as a redirect backend; the
// controller and the cache are told the new names, the controller may
// update its DaemonSet's finalizers, and the link-local address is
// redirected.
func TestBesideClassic(t *testing.T) {
	b, err := os.ReadFile("../../e2e/lab/classic/nodelocaldns.yaml")
	if err != nil {
		t.Fatal(err)
	}
	classic := decode(t, b)
	var classicPod map[string]string
	names := map[string]bool{}
	for _, u := range classic {
		names[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = true
		if u.GetKind() == "DaemonSet" {
			classicPod, _, _ = unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "labels")
		}
	}
	if len(classicPod) == 0 || len(names) < 5 {
		t.Fatalf("classic manifest: %d objects, pod labels %v", len(names), classicPod)
	}
	objs := render(t, "components/beside-classic")
	for _, u := range objs {
		if names[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] {
			t.Errorf("%s %s/%s is also classic NodeLocal DNSCache's", u.GetKind(), u.GetNamespace(), u.GetName())
		}
		for _, path := range [][]string{{"spec", "selector", "matchLabels"}, {"spec", "selector"}} {
			sel, ok, _ := unstructured.NestedStringMap(u.Object, path...)
			if ok && len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(classicPod)) {
				t.Errorf("%s %s selects classic's pods (%v)", u.GetKind(), u.GetName(), sel)
			}
		}
	}
	ds := typed[appsv1.DaemonSet](t, objs, "DaemonSet", "lrpdns-node-cache")
	n := lrp.DefaultNames()
	n.DaemonSet, n.UpstreamService = "lrpdns-node-cache", "lrpdns-upstream"
	for _, build := range []func() (*ciliumv2.CiliumLocalRedirectPolicy, error){
		func() (*ciliumv2.CiliumLocalRedirectPolicy, error) { return lrp.DesiredPolicy(n, stockKubeDNS(), ds) },
		func() (*ciliumv2.CiliumLocalRedirectPolicy, error) {
			return lrp.DesiredAddressPolicy(n, stockKubeDNS(), ds, netip.MustParseAddr("169.254.20.10"))
		},
	} {
		p, err := build()
		if err != nil {
			t.Fatalf("the controller cannot build the redirect: %v", err)
		}
		if labels.SelectorFromSet(p.Spec.RedirectBackend.LocalEndpointSelector.MatchLabels).Matches(labels.Set(classicPod)) {
			t.Errorf("policy %s selects classic's pods", p.Name)
		}
	}
	d := typed[appsv1.Deployment](t, objs, "Deployment", "lrpdns-controller")
	for what, want := range map[string][]string{
		"controller": {"--daemonset=lrpdns-node-cache", "--upstream-service=lrpdns-upstream", "--redirect-addresses=169.254.20.10"},
		"cache":      {"--upstream-service=lrpdns-upstream"},
	} {
		args := d.Spec.Template.Spec.Containers[0].Args
		if what == "cache" {
			args = ds.Spec.Template.Spec.Containers[0].Args
		}
		for _, w := range want {
			if !slices.Contains(args, w) {
				t.Errorf("%s args %v lack %s", what, args, w)
			}
		}
	}
	role := typed[rbacv1.Role](t, objs, "Role", "lrpdns-controller")
	granted := false
	for _, r := range role.Rules {
		granted = granted || (slices.Contains(r.Resources, "daemonsets/finalizers") && slices.Equal(r.ResourceNames, []string{"lrpdns-node-cache"}))
	}
	if !granted {
		t.Errorf("Role rules %+v: want update on daemonsets/finalizers of lrpdns-node-cache", role.Rules)
	}
	cargs := append(slices.Clone(d.Spec.Template.Spec.Containers[0].Args), "-h")
	if err := app.Run(context.Background(), cargs, io.Discard, io.Discard); err != nil {
		t.Errorf("lrpdns %v: %v", cargs, err)
	}
}
