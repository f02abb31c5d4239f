package lrp

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	"go.uber.org/zap/zapcore"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/lrpdns/lrpdns/internal/testenv"
)

// The suite runs on a real kube-apiserver and etcd (KUBEBUILDER_ASSETS,
// built by hack/k8s-bins.sh) with Cilium's own CiliumLocalRedirectPolicy CRD
// from the cilium module. envtest runs no controllers: no garbage collector,
// no DaemonSet or EndpointSlice controller; tests write those statuses.
var suite struct {
	env    *envtest.Environment
	cfg    *rest.Config
	client client.Client
	err    error
}

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			suite.err = testenv.ErrNoAssets
			return m.Run()
		}
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))
		env, cfg, err := startEnv(true)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer env.Stop() //nolint:errcheck // best effort at exit
		scheme, _ := Scheme()
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		suite.env, suite.cfg, suite.client = env, cfg, c
		return m.Run()
	}()
	os.Exit(code)
}

func zapLevel() zapcore.Level {
	if os.Getenv("LRPDNS_TEST_LOG") != "" {
		return -1
	}
	return 4 // quiet: only panics
}

func startEnv(withCRD bool) (*envtest.Environment, *rest.Config, error) {
	return testenv.Start(withCRD)
}

func clrpCRD() apiextensionsv1.CustomResourceDefinition { return testenv.CLRPCRD() }

func needEnv(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test on kube-apiserver + etcd; skipped with -short")
	}
	if suite.err != nil {
		t.Skip(suite.err)
	}
}

// countingClient counts the reconciler's writes.
type countingClient struct {
	client.Client
	writes *atomic.Int64
	reads  *atomic.Int64
}

func (c countingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.reads.Add(1)
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.writes.Add(1)
	return c.Client.Create(ctx, obj, opts...)
}

func (c countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.writes.Add(1)
	return c.Client.Update(ctx, obj, opts...)
}

func (c countingClient) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	c.writes.Add(1)
	return c.Client.Patch(ctx, obj, p, opts...)
}

func (c countingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	c.writes.Add(1)
	return c.Client.Apply(ctx, obj, opts...)
}

func (c countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.writes.Add(1)
	return c.Client.Delete(ctx, obj, opts...)
}

// scenario is one namespace with kube-dns, the cache DaemonSet, Cilium's
// objects, and a running controller.
type scenario struct {
	t      testing.TB
	ns     string
	c      client.Client
	cfg    *rest.Config
	names  Names
	writes atomic.Int64
	reads  atomic.Int64
	stopMu sync.Mutex
	stop   func()

	upstreamReady atomic.Bool
	sliceOnce     sync.Once
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	needEnv(t)
	return newScenarioOn(t, suite.client, suite.cfg)
}

// newScenarioOn makes a scenario on another API server.
func newScenarioOn(t testing.TB, c client.Client, cfg *rest.Config) *scenario {
	t.Helper()
	s := &scenario{t: t, ns: "lrp-" + rand.String(6), c: c, cfg: cfg}
	s.names = DefaultNames()
	s.names.Namespace = s.ns
	s.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}})
	return s
}

func (s *scenario) ctx() context.Context { return s.t.Context() }

func (s *scenario) create(obj client.Object) {
	s.t.Helper()
	if obj.GetNamespace() == "" && obj.GetObjectKind().GroupVersionKind().Kind != "Namespace" {
		if _, ok := obj.(*corev1.Namespace); !ok {
			obj.SetNamespace(s.ns)
		}
	}
	if err := s.c.Create(s.ctx(), obj); err != nil {
		s.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// selfPod creates a Pod standing for the controller's own and returns the
// owner reference the controller gets from the downward API.
func (s *scenario) selfPod() *metav1.OwnerReference {
	s.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "lrpdns-controller-0", Namespace: s.ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "controller", Image: "ghcr.io/lrpdns/lrpdns:test"}}},
	}
	s.create(pod)
	return SelfPod(pod.Name, string(pod.UID))
}

// startController runs a manager for the scenario's namespace until the
// test ends or stopController is called.
func (s *scenario) startController(cfg *rest.Config, mutate ...func(*Options)) {
	s.t.Helper()
	o := Options{
		Names:   s.names,
		Cilium:  CiliumNames{Namespace: s.ns, ConfigMap: "cilium-config", DaemonSet: "cilium"},
		Recheck: 300 * time.Millisecond, UpstreamSettle: 300 * time.Millisecond, MetricsAddr: "0", HealthAddr: "0",
		skipNameValidation: true,
	}
	for _, m := range mutate {
		m(&o)
	}
	mgr, err := newManager(cfg, o, func(c client.Client) client.Client {
		return countingClient{Client: c, writes: &s.writes, reads: &s.reads}
	})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	s.stopMu.Lock()
	s.stop = func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("manager: %v", err)
		}
	}
	s.stopMu.Unlock()
	s.t.Cleanup(s.stopController)
}

func (s *scenario) stopController() {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// --- fixtures

func dnsServicePortsFixture() []corev1.ServicePort {
	return []corev1.ServicePort{
		{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
		{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
		{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9153, TargetPort: intstr.FromInt32(9153)},
	}
}

func cacheContainerPorts(udpName, tcpName string, port int32) []corev1.ContainerPort {
	return []corev1.ContainerPort{
		{Name: udpName, Protocol: corev1.ProtocolUDP, ContainerPort: port},
		{Name: tcpName, Protocol: corev1.ProtocolTCP, ContainerPort: port},
		{Name: "metrics", Protocol: corev1.ProtocolTCP, ContainerPort: 9253},
	}
}

func (s *scenario) kubeDNS(ports []corev1.ServicePort) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.names.KubeDNSService, Namespace: s.ns, Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"k8s-app": "kube-dns"},
			Ports:    ports,
		},
	}
	s.create(svc)
	return svc
}

func (s *scenario) daemonSet(ports []corev1.ContainerPort) *appsv1.DaemonSet {
	labels := map[string]string{"k8s-app": "node-local-dns"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: s.names.DaemonSet, Namespace: s.ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "node-cache", Image: "ghcr.io/lrpdns/node-cache:test", Ports: ports,
				}}},
			},
		},
	}
	s.create(ds)
	return ds
}

// setReady writes the status of a DaemonSet rolled out on n nodes, each with
// a ready pod of the current template.
func (s *scenario) setReady(n int32) {
	s.t.Helper()
	s.setRollout(n, n, n)
}

// setRollout writes the status the DaemonSet controller would write while
// updated of desired nodes run the current template and ready have a ready
// pod.
func (s *scenario) setRollout(desired, updated, ready int32) {
	s.t.Helper()
	ds := s.cacheDaemonSet()
	ds.Status.ObservedGeneration = ds.Generation
	ds.Status.DesiredNumberScheduled, ds.Status.CurrentNumberScheduled = desired, desired
	ds.Status.UpdatedNumberScheduled = updated
	ds.Status.NumberReady, ds.Status.NumberAvailable = ready, ready
	if err := s.c.Status().Update(s.ctx(), ds); err != nil {
		s.t.Fatal(err)
	}
}

// upstreamEndpoints says whether kube-dns-upstream's endpoint is ready, and
// plays the EndpointSlice controller for it (envtest runs none): while the
// test runs, the Service, whichever UID it has now, has one slice owned by
// it, and slices of a deleted Service go, as the garbage collector takes
// them.
func (s *scenario) upstreamEndpoints(ready bool) {
	s.t.Helper()
	s.upstreamReady.Store(ready)
	s.sliceOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		s.t.Cleanup(func() { cancel(); <-done })
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				s.syncSlices(ctx)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	})
	s.syncSlices(s.ctx())
}

func (s *scenario) syncSlices(ctx context.Context) {
	svc := &corev1.Service{}
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.names.UpstreamService}, svc)
	list := &discoveryv1.EndpointSliceList{}
	if s.c.List(ctx, list, client.InNamespace(s.ns), client.MatchingLabels{discoveryv1.LabelServiceName: s.names.UpstreamService}) != nil {
		return
	}
	var own *discoveryv1.EndpointSlice
	for i := range list.Items {
		sl := &list.Items[i]
		if err == nil && len(sl.OwnerReferences) == 1 && sl.OwnerReferences[0].UID == svc.UID {
			own = sl
			continue
		}
		_ = s.c.Delete(ctx, sl)
	}
	if err != nil {
		return
	}
	ready := s.upstreamReady.Load()
	eps := []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}}
	if own != nil {
		if own.Endpoints[0].Conditions.Ready == nil || *own.Endpoints[0].Conditions.Ready != ready {
			own.Endpoints = eps
			_ = s.c.Update(ctx, own)
		}
		return
	}
	_ = s.c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: s.names.UpstreamService + "-", Namespace: s.ns,
			Labels:          map[string]string{discoveryv1.LabelServiceName: s.names.UpstreamService},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](53)}},
	})
}

// cilium writes Cilium's ConfigMap and agent DaemonSet.
func (s *scenario) cilium(lrpEnabled, image string) {
	s.create(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: s.ns},
		Data:       map[string]string{"enable-local-redirect-policy": lrpEnabled},
	})
	labels := map[string]string{"k8s-app": "cilium"}
	s.create(&appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium", Namespace: s.ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "cilium-agent", Image: image}}},
			},
		},
	})
}

// ciliumConfig adds data to cilium-config.
func (s *scenario) ciliumConfig(data map[string]string) {
	s.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: "cilium-config"}, cm); err != nil {
		s.t.Fatal(err)
	}
	maps.Copy(cm.Data, data)
	if err := s.c.Update(s.ctx(), cm); err != nil {
		s.t.Fatal(err)
	}
}

// install writes Cilium's objects, kube-dns, the cache DaemonSet with the
// given container ports (one ready pod) and ready upstream endpoints.
func (s *scenario) install(lrpEnabled, ciliumImage string, ports []corev1.ContainerPort) {
	s.cilium(lrpEnabled, ciliumImage)
	s.kubeDNS(dnsServicePortsFixture())
	s.daemonSet(ports)
	s.upstreamEndpoints(true)
	s.setReady(1)
}

// healthy sets up a cluster where the redirect should be created.
func (s *scenario) healthy() {
	s.install("true", "quay.io/cilium/cilium:v1.20.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		cacheContainerPorts("dns", "dns-tcp", 5353))
}

// --- observations

func (s *scenario) policy() (*ciliumv2.CiliumLocalRedirectPolicy, error) {
	p := &ciliumv2.CiliumLocalRedirectPolicy{}
	return p, s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: s.names.Policy}, p)
}

func (s *scenario) upstream() (*corev1.Service, error) {
	svc := &corev1.Service{}
	return svc, s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: s.names.UpstreamService}, svc)
}

// cacheDaemonSet returns the cache DaemonSet as it is now.
func (s *scenario) cacheDaemonSet() *appsv1.DaemonSet {
	s.t.Helper()
	ds := &appsv1.DaemonSet{}
	if err := s.c.Get(s.ctx(), client.ObjectKey{Namespace: s.ns, Name: s.names.DaemonSet}, ds); err != nil {
		s.t.Fatal(err)
	}
	return ds
}

// waitPolicy waits for the policy to exist and satisfy ok.
func (s *scenario) waitPolicy(ok func(*ciliumv2.CiliumLocalRedirectPolicy) bool) *ciliumv2.CiliumLocalRedirectPolicy {
	s.t.Helper()
	var p *ciliumv2.CiliumLocalRedirectPolicy
	s.eventually("the CiliumLocalRedirectPolicy", func() bool {
		var err error
		p, err = s.policy()
		return err == nil && (ok == nil || ok(p))
	})
	return p
}

func (s *scenario) waitNoPolicy() {
	s.t.Helper()
	s.eventually("no CiliumLocalRedirectPolicy", func() bool {
		_, err := s.policy()
		return client.IgnoreNotFound(err) == nil && err != nil
	})
}

// consistentlyNoPolicy asserts the policy stays absent for d.
func (s *scenario) consistentlyNoPolicy(d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p, err := s.policy(); err == nil {
			s.t.Fatalf("CiliumLocalRedirectPolicy created too early: %+v", p.Spec)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allEvents lists the Events in the scenario's namespace.
func (s *scenario) allEvents() []eventsv1.Event {
	s.t.Helper()
	list := &eventsv1.EventList{}
	if err := s.c.List(s.ctx(), list, client.InNamespace(s.ns)); err != nil {
		s.t.Fatal(err)
	}
	return list.Items
}

// events returns the notes of Events with reason.
func (s *scenario) events(reason string) []string {
	s.t.Helper()
	var out []string
	for _, e := range s.allEvents() {
		if e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

func (s *scenario) waitEvent(reason string) string {
	s.t.Helper()
	var notes []string
	s.eventually("an Event with reason "+reason, func() bool {
		notes = s.events(reason)
		return len(notes) > 0
	})
	return notes[0]
}

func (s *scenario) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cachePod creates a pod of ds on node, ready or not, and, when stuck,
// deletes it with a finalizer that keeps it terminating.
func (s *scenario) cachePod(node string, ds *appsv1.DaemonSet, ready, stuck bool) {
	s.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "cache-" + node, Namespace: s.ns, Labels: ds.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)}},
		},
		Spec: *ds.Spec.Template.Spec.DeepCopy(),
	}
	p.Spec.NodeName = node
	if stuck {
		p.Finalizers = []string{"lrpdns.test/stuck"}
	}
	s.create(p)
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	if err := s.c.Status().Update(s.ctx(), p); err != nil {
		s.t.Fatal(err)
	}
	if stuck {
		if err := s.c.Delete(s.ctx(), p); err != nil {
			s.t.Fatal(err)
		}
		s.t.Cleanup(func() {
			cur := &corev1.Pod{}
			if err := s.c.Get(context.Background(), client.ObjectKeyFromObject(p), cur); err == nil {
				cur.Finalizers = nil
				_ = s.c.Update(context.Background(), cur)
			}
		})
	}
}
