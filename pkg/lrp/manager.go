package lrp

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Scheme knows the built-in types and Cilium's v2 API.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("failed to add client-go types: %w", err)
	}
	if err := ciliumv2.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("failed to add Cilium v2 types: %w", err)
	}
	return s, nil
}

// CacheOptions scope every informer to what the controller needs: one
// namespace, the one DaemonSet by name, the upstream Service's EndpointSlices
// by label. Pods are never watched, so memory does not grow with them.
// Policies are included when their CRD is served.
func CacheOptions(n Names, policies bool) cache.Options {
	ns := map[string]cache.Config{n.Namespace: {}}
	o := cache.Options{
		DefaultNamespaces: ns,
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.DaemonSet{}: {Namespaces: map[string]cache.Config{n.Namespace: {
				FieldSelector: fields.OneTermEqualSelector("metadata.name", n.DaemonSet),
			}}},
			&discoveryv1.EndpointSlice{}: {Namespaces: map[string]cache.Config{n.Namespace: {
				LabelSelector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: n.UpstreamService}),
			}}},
			&corev1.Service{}: {Namespaces: ns},
		},
	}
	if policies {
		o.ByObject[&ciliumv2.CiliumLocalRedirectPolicy{}] = cache.ByObject{Namespaces: ns}
	}
	return o
}

// ciliumCacheOptions scope the informers on Cilium's objects: its
// ConfigMap and agent DaemonSet, each by name, in Cilium's namespace (which
// may not be ours).
func ciliumCacheOptions(c CiliumNames, scheme *runtime.Scheme) cache.Options {
	named := func(name string) map[string]cache.Config {
		return map[string]cache.Config{c.Namespace: {FieldSelector: fields.OneTermEqualSelector("metadata.name", name)}}
	}
	return cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Namespaces: named(c.ConfigMap)},
			&appsv1.DaemonSet{}: {Namespaces: named(c.DaemonSet)},
		},
	}
}

// Options configure NewManager.
type Options struct {
	Names  Names
	Cilium CiliumNames
	// LeaderElection makes only one replica reconcile at a time.
	LeaderElection bool
	MetricsAddr    string // "0" disables
	HealthAddr     string // "0" disables
	// Recheck is how soon to look again when Cilium is misconfigured;
	// default one minute.
	Recheck time.Duration
	// UpstreamSettle is how old kube-dns-upstream must be before a policy
	// is created; default 5s.
	UpstreamSettle time.Duration
	// UpstreamDrain is how long kube-dns-upstream outlives the DaemonSet,
	// for its terminating pods; default one minute.
	UpstreamDrain time.Duration
	// WithheldWarning is how long the redirect may wait for the cache pods
	// before a RedirectWithheld Warning names the nodes holding it up;
	// default ten minutes.
	WithheldWarning time.Duration
	// CiliumVersion is the agent's release when its image has no version
	// tag (a digest only); "" reads the tag.
	CiliumVersion string
	// UnreadyAfter is how long reconciles may fail in a row before /readyz
	// fails; default one minute.
	UnreadyAfter time.Duration
	// Self is the controller's own pod (SelfPod); nil: no drain.
	Self *metav1.OwnerReference
	// Addresses are cluster DNS addresses redirected next to kube-dns
	// (Reconciler.Addresses).
	Addresses []netip.Addr

	// skipNameValidation lets tests run several managers in one process.
	skipNameValidation bool
	// reconciled, when set, is called at each reconcile: tests count them.
	reconciled func()
	// clock, when set, is the reconciler's clock: tests skew it.
	clock clock.PassiveClock
}

// SelfPod is the owner reference to the controller's own pod, from the
// downward API (POD_NAME, POD_UID), or nil outside a pod.
func SelfPod(name, uid string) *metav1.OwnerReference {
	if name == "" || uid == "" {
		return nil
	}
	return &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: name, UID: types.UID(uid)}
}

// NewManager returns a manager running the reconciler, with its cache scoped
// by CacheOptions.
func NewManager(cfg *rest.Config, o Options) (manager.Manager, error) {
	return newManager(cfg, o, nil)
}

// newManager lets tests wrap the reconciler's client.
func newManager(cfg *rest.Config, o Options, wrap func(client.Client) client.Client) (manager.Manager, error) {
	registerMetrics()
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create discovery client: %w", err)
	}
	policies, err := policyCRDServed(dc)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   CacheOptions(o.Names, policies),
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        o.Names.Lease(),
		LeaderElectionNamespace: o.Names.Namespace,
		// Hand the Lease over at once on rollouts: the process exits right
		// after the manager stops, so releasing early is safe.
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.HealthAddr,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create manager: %w", err)
	}
	// Cilium's objects, watched: a change of its configuration or agent is
	// acted on at once, and reads cost no API request.
	copts := ciliumCacheOptions(o.Cilium, scheme)
	copts.Mapper = mgr.GetRESTMapper()
	ciliumCache, err := cache.New(cfg, copts)
	if err != nil {
		return nil, fmt.Errorf("failed to create the cache of Cilium's objects: %w", err)
	}
	if err := mgr.Add(ciliumCache); err != nil {
		return nil, fmt.Errorf("failed to add the cache of Cilium's objects: %w", err)
	}
	c := mgr.GetClient()
	if wrap != nil {
		c = wrap(c)
	}
	r := &Reconciler{
		Client:          c,
		Recheck:         o.Recheck,
		UpstreamSettle:  o.UpstreamSettle,
		UpstreamDrain:   o.UpstreamDrain,
		WithheldWarning: o.WithheldWarning,
		UnreadyAfter:    o.UnreadyAfter,
		CiliumVersion:   o.CiliumVersion,
		CiliumReader:    ciliumCache,
		Self:            o.Self,
		Addresses:       o.Addresses,

		skipNameValidation: o.skipNameValidation,
		reconciled:         o.reconciled,
		clock:              o.clock,
		APIReader:          mgr.GetAPIReader(),
		Discovery:          dc,
		Events:             newQuietRecorder(mgr.GetEventRecorder("lrpdns"), scheme, clock.RealClock{}),
		Names:              o.Names,
		Cilium:             o.Cilium,
	}
	if err := r.SetupWithManager(mgr, ciliumCache); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("reconcile", r.readyCheck); err != nil {
		return nil, fmt.Errorf("failed to add ready check: %w", err)
	}
	return mgr, nil
}

// SetupWithManager registers the watches. Every event maps to the one
// request, the DaemonSet's name. Policies are watched if their CRD is
// served at start; otherwise the manager stops once it is installed.
// Cilium's ConfigMap and agent DaemonSet come from ciliumCache: every
// change of the ConfigMap, and of the agent's spec (its image), not its
// status, which changes with every agent pod.
func (r *Reconciler) SetupWithManager(mgr manager.Manager, ciliumCache cache.Cache) error {
	req := []ctrl.Request{{NamespacedName: r.key(r.Names.DaemonSet)}}
	toDaemonSet := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []ctrl.Request { return req })
	named := func(names ...string) predicate.Predicate {
		return predicate.NewPredicateFuncs(func(o client.Object) bool {
			for _, n := range names {
				if o.GetNamespace() == r.Names.Namespace && o.GetName() == n {
					return true
				}
			}
			return false
		})
	}
	served, err := r.policiesServed()
	if err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("lrpdns").
		WithOptions(controller.Options{SkipNameValidation: &r.skipNameValidation}).
		For(&appsv1.DaemonSet{}, builder.WithPredicates(named(r.Names.DaemonSet))).
		Watches(&corev1.Service{}, toDaemonSet, builder.WithPredicates(named(r.Names.KubeDNSService, r.Names.UpstreamService))).
		Watches(&discoveryv1.EndpointSlice{}, toDaemonSet).
		WatchesRawSource(source.Kind[client.Object](ciliumCache, &corev1.ConfigMap{}, toDaemonSet)).
		WatchesRawSource(source.Kind[client.Object](ciliumCache, &appsv1.DaemonSet{}, toDaemonSet, predicate.GenerationChangedPredicate{}))
	if served {
		policies := []string{r.Names.Policy}
		for _, a := range r.Addresses {
			policies = append(policies, r.Names.AddressPolicy(a))
		}
		b = b.Watches(&ciliumv2.CiliumLocalRedirectPolicy{}, toDaemonSet, builder.WithPredicates(named(policies...)))
	} else {
		// Informers cannot be added to a running controller reliably; once
		// the CRD is installed, stop so the process restarts watching it.
		if err := mgr.Add(manager.RunnableFunc(r.awaitPolicyCRD)); err != nil {
			return fmt.Errorf("failed to add CRD watcher: %w", err)
		}
	}
	r.watching = served
	if err := b.Complete(r); err != nil {
		return fmt.Errorf("failed to build controller: %w", err)
	}
	return nil
}
