package lrp

import (
	"context"
	"errors"
	"fmt"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// FieldOwner is the server-side apply field manager for what we write.
const FieldOwner = "lrpdns"

// defaultRecheck is how soon a reconcile that found Cilium misconfigured
// looks again: nothing the controller watches changes when cilium-config does.
const defaultRecheck = time.Minute

// Event reasons.
const (
	ReasonCreated        = "PolicyCreated"
	ReasonRecreated      = "PolicyRecreated"
	ReasonRepaired       = "Repaired"
	ReasonRemoved        = "PolicyRemoved"
	ReasonKubeDNSMissing = "KubeDNSServiceMissing"
	ReasonPortMismatch   = "PortMismatch"
	ReasonCRDMissing     = "LocalRedirectPolicyCRDMissing"
	ReasonLRPDisabled    = "LocalRedirectPolicyDisabled"
	ReasonCiliumTooOld   = "CiliumTooOld"
)

// +kubebuilder:rbac:groups=apps,namespace=kube-system,resources=daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=discovery.k8s.io,namespace=kube-system,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=cilium.io,namespace=kube-system,resources=ciliumlocalredirectpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=configmaps,resourceNames=cilium-config,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,namespace=kube-system,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=kube-system,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Reconciler keeps the upstream Service and the redirect policy right.
// Every event maps to one request: the DaemonSet's name.
type Reconciler struct {
	// Client reads from the manager's scoped cache and writes.
	Client client.Client
	// APIReader reads what is not cached: cilium-config and Cilium's
	// DaemonSet, each once per reconcile.
	APIReader client.Reader
	Mapper    meta.RESTMapper
	Events    events.EventRecorder
	Names     Names
	Cilium    CiliumNames
	// Recheck overrides defaultRecheck when positive.
	Recheck time.Duration

	// watching is set at setup when policies are watched.
	watching bool

	skipNameValidation bool
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	ds := &appsv1.DaemonSet{}
	err := r.Client.Get(ctx, r.key(r.Names.DaemonSet), ds)
	if apierrors.IsNotFound(err) || (err == nil && ds.DeletionTimestamp != nil) {
		return ctrl.Result{}, r.removeAll(ctx)
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to get DaemonSet: %w", err)
	}

	served, err := r.policiesServed()
	if err != nil {
		return ctrl.Result{}, err
	}
	if !served {
		r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonCRDMissing, "Check",
			"the CiliumLocalRedirectPolicy CRD (%s) is not installed: install Cilium with local redirect policies enabled", ciliumv2.CLRPName)
		log.Info("CiliumLocalRedirectPolicy CRD not served; checking again later", "crd", ciliumv2.CLRPName, "after", r.recheck())
		return ctrl.Result{RequeueAfter: r.recheck()}, nil
	}

	kubeDNS := &corev1.Service{}
	if err := r.Client.Get(ctx, r.key(r.Names.KubeDNSService), kubeDNS); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("failed to get Service %s: %w", r.Names.KubeDNSService, err)
		}
		r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonKubeDNSMissing, "Check",
			"Service %s/%s not found: there is no cluster DNS to redirect", r.Names.Namespace, r.Names.KubeDNSService)
		return ctrl.Result{}, r.removePolicy(ctx, ds, "Service "+r.Names.KubeDNSService+" not found")
	}

	// Compute both desired objects before writing anything.
	upstream, err := DesiredUpstreamService(r.Names, kubeDNS, ds)
	var policy *ciliumv2.CiliumLocalRedirectPolicy
	if err == nil {
		policy, err = DesiredPolicy(r.Names, kubeDNS, ds)
	}
	if pe := (*PortError)(nil); errors.As(err, &pe) {
		r.Events.Eventf(ds, kubeDNS, corev1.EventTypeWarning, ReasonPortMismatch, "Check", "%s", pe.Error())
		log.Error(pe, "cannot build the redirect", "daemonset", klog.KObj(ds), "service", klog.KObj(kubeDNS))
		return ctrl.Result{}, r.removePolicy(ctx, ds, "its ports cannot match")
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyUpstream(ctx, ds, upstream); err != nil {
		return ctrl.Result{}, err
	}

	check := r.checkCilium(ctx, ds)
	if check.tooOld {
		return ctrl.Result{RequeueAfter: r.recheck()}, r.removePolicy(ctx, ds, "Cilium is older than "+minCiliumVersion)
	}
	res := ctrl.Result{}
	if check.warned {
		res.RequeueAfter = r.recheck()
	}
	return res, r.ensurePolicy(ctx, ds, policy)
}

func (r *Reconciler) recheck() time.Duration {
	if r.Recheck > 0 {
		return r.Recheck
	}
	return defaultRecheck
}

func (r *Reconciler) key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: r.Names.Namespace, Name: name}
}

// ensurePolicy creates the policy once the cache can take traffic, re-creates
// it when its immutable spec must change, and repairs our metadata.
func (r *Reconciler) ensurePolicy(ctx context.Context, ds *appsv1.DaemonSet, want *ciliumv2.CiliumLocalRedirectPolicy) error {
	log := logf.FromContext(ctx)
	cur := &ciliumv2.CiliumLocalRedirectPolicy{}
	err := r.Client.Get(ctx, r.key(want.Name), cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to get CiliumLocalRedirectPolicy: %w", err)
	}
	if apierrors.IsNotFound(err) {
		ready, why, err := r.cacheReady(ctx, ds)
		if err != nil {
			return err
		}
		if !ready {
			log.Info("not redirecting yet", "reason", why, "daemonset", klog.KObj(ds))
			return nil
		}
		if err := r.apply(ctx, want); err != nil {
			return err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Create",
			"redirecting Service %s/%s to the local %s pod", r.Names.Namespace, r.Names.KubeDNSService, ds.Name)
		log.Info("created CiliumLocalRedirectPolicy", "policy", klog.KObj(want))
		return nil
	}
	if !equality.Semantic.DeepEqual(cur.Spec.RedirectFrontend, want.Spec.RedirectFrontend) ||
		!equality.Semantic.DeepEqual(cur.Spec.RedirectBackend, want.Spec.RedirectBackend) ||
		cur.Spec.SkipRedirectFromBackend != want.Spec.SkipRedirectFromBackend {
		// The frontend, backend and skipRedirectFromBackend are immutable.
		if err := r.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete CiliumLocalRedirectPolicy for re-creation: %w", err)
		}
		if err := r.apply(ctx, want); err != nil {
			return err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonRecreated, "Recreate",
			"re-created: the redirect is immutable and its desired ports or selector changed (frontend %s, backend %s)",
			describePolicyPorts(want.Spec.RedirectFrontend.ServiceMatcher.ToPorts), describePolicyPorts(want.Spec.RedirectBackend.ToPorts))
		log.Info("re-created CiliumLocalRedirectPolicy", "policy", klog.KObj(want))
		return nil
	}
	if cur.Spec.Description != want.Spec.Description || metadataDrifted(&cur.ObjectMeta, &want.ObjectMeta) {
		if err := r.apply(ctx, want); err != nil {
			return err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonRepaired, "Update", "restored the managed labels, owner reference or description of %s", want.Name)
		log.Info("repaired CiliumLocalRedirectPolicy metadata", "policy", klog.KObj(want))
	}
	return nil
}

// cacheReady reports whether the DaemonSet has ready pods and the upstream
// Service has ready endpoints: only then does a redirect help.
func (r *Reconciler) cacheReady(ctx context.Context, ds *appsv1.DaemonSet) (bool, string, error) {
	if ds.Status.NumberReady == 0 {
		return false, fmt.Sprintf("DaemonSet %s/%s has no ready pods", ds.Namespace, ds.Name), nil
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.Client.List(ctx, slices, client.InNamespace(r.Names.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: r.Names.UpstreamService}); err != nil {
		return false, "", fmt.Errorf("failed to list EndpointSlices: %w", err)
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return true, "", nil
			}
		}
	}
	return false, fmt.Sprintf("Service %s/%s has no ready endpoints", r.Names.Namespace, r.Names.UpstreamService), nil
}

func (r *Reconciler) applyUpstream(ctx context.Context, ds *appsv1.DaemonSet, want *corev1.Service) error {
	cur := &corev1.Service{}
	err := r.Client.Get(ctx, r.key(want.Name), cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to get Service %s: %w", want.Name, err)
	}
	if err == nil && !serviceDrifted(cur, want) {
		return nil
	}
	if err := r.apply(ctx, want); err != nil {
		return err
	}
	if apierrors.IsNotFound(err) {
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Create", "created Service %s for the cache's cluster-domain forwards", want.Name)
	} else {
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonRepaired, "Update", "restored Service %s to kube-dns's selector and DNS ports", want.Name)
	}
	logf.FromContext(ctx).Info("applied upstream Service", "service", klog.KObj(want))
	return nil
}

// apply writes obj with server-side apply as FieldOwner, taking over fields
// a hand edit changed.
func (r *Reconciler) apply(ctx context.Context, obj runtime.Object) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("failed to convert %T: %w", obj, err)
	}
	delete(u, "status")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("failed to apply %s %s: %w", u["kind"], klog.KRef(r.Names.Namespace, fmt.Sprint(u["metadata"].(map[string]any)["name"])), err)
	}
	return nil
}

// removePolicy deletes our redirect so DNS falls back to kube-dns.
func (r *Reconciler) removePolicy(ctx context.Context, ds *appsv1.DaemonSet, why string) error {
	deleted, err := r.deleteOwned(ctx, &ciliumv2.CiliumLocalRedirectPolicy{}, r.Names.Policy)
	if err != nil || !deleted {
		return err
	}
	r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonRemoved, "Delete",
		"removed CiliumLocalRedirectPolicy %s so DNS falls back to kube-dns: %s", r.Names.Policy, why)
	logf.FromContext(ctx).Info("removed CiliumLocalRedirectPolicy", "policy", klog.KRef(r.Names.Namespace, r.Names.Policy), "reason", why)
	return nil
}

// removeAll takes the redirect and the upstream Service away once the
// DaemonSet is gone, without waiting for the garbage collector.
func (r *Reconciler) removeAll(ctx context.Context) error {
	log := logf.FromContext(ctx)
	var errs []error
	if served, err := r.policiesServed(); err != nil || served {
		if deleted, err := r.deleteOwned(ctx, &ciliumv2.CiliumLocalRedirectPolicy{}, r.Names.Policy); err != nil {
			errs = append(errs, err)
		} else if deleted {
			log.Info("DaemonSet gone: removed CiliumLocalRedirectPolicy; DNS falls back to kube-dns", "policy", klog.KRef(r.Names.Namespace, r.Names.Policy))
		}
	}
	if deleted, err := r.deleteOwned(ctx, &corev1.Service{}, r.Names.UpstreamService); err != nil {
		errs = append(errs, err)
	} else if deleted {
		log.Info("DaemonSet gone: removed upstream Service", "service", klog.KRef(r.Names.Namespace, r.Names.UpstreamService))
	}
	return errors.Join(errs...)
}

// deleteOwned deletes the named object if it carries our managed-by label.
func (r *Reconciler) deleteOwned(ctx context.Context, obj client.Object, name string) (bool, error) {
	if err := r.Client.Get(ctx, r.key(name), obj); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if obj.GetLabels()[ManagedByLabel] != ManagedByValue {
		return false, nil
	}
	uid := obj.GetUID()
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid}); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return true, nil
}

// policiesServed reports whether the API serves CiliumLocalRedirectPolicy.
func (r *Reconciler) policiesServed() (bool, error) {
	if r.watching {
		return true, nil
	}
	_, err := r.Mapper.RESTMapping(ciliumv2.SchemeGroupVersion.WithKind(ciliumv2.CLRPKindDefinition).GroupKind(), ciliumv2.SchemeGroupVersion.Version)
	if meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to discover CiliumLocalRedirectPolicy: %w", err)
	}
	return true, nil
}

// ErrPolicyCRDInstalled stops a controller that started without the
// CiliumLocalRedirectPolicy CRD once it appears, so that it restarts
// watching policies.
var ErrPolicyCRDInstalled = errors.New("the CiliumLocalRedirectPolicy CRD was installed after start: restarting to watch it")

func (r *Reconciler) awaitPolicyCRD(ctx context.Context) error {
	t := time.NewTicker(r.recheck())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if served, err := r.policiesServed(); err == nil && served {
				return ErrPolicyCRDInstalled
			}
		}
	}
}

func serviceDrifted(cur, want *corev1.Service) bool {
	if metadataDrifted(&cur.ObjectMeta, &want.ObjectMeta) ||
		!equality.Semantic.DeepEqual(cur.Spec.Selector, want.Spec.Selector) ||
		len(cur.Spec.Ports) != len(want.Spec.Ports) {
		return true
	}
	for i, p := range want.Spec.Ports {
		c := cur.Spec.Ports[i]
		if c.Name != p.Name || c.Protocol != p.Protocol || c.Port != p.Port || c.TargetPort != p.TargetPort {
			return true
		}
	}
	if want.Spec.IPFamilyPolicy != nil && (cur.Spec.IPFamilyPolicy == nil || *cur.Spec.IPFamilyPolicy != *want.Spec.IPFamilyPolicy) {
		return true
	}
	return len(want.Spec.IPFamilies) > 0 && !equality.Semantic.DeepEqual(cur.Spec.IPFamilies, want.Spec.IPFamilies)
}

// metadataDrifted reports whether our labels or owner reference are missing.
func metadataDrifted(cur, want *metav1.ObjectMeta) bool {
	for k, v := range want.Labels {
		if cur.Labels[k] != v {
			return true
		}
	}
	for _, w := range want.OwnerReferences {
		found := false
		for _, c := range cur.OwnerReferences {
			if c.UID == w.UID && c.Kind == w.Kind && c.Name == w.Name {
				found = true
			}
		}
		if !found {
			return true
		}
	}
	return false
}

func describePolicyPorts(ports []ciliumv2.PortInfo) string {
	s := ""
	for i, p := range ports {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s/%s", p.Name, p.Port, p.Protocol)
	}
	return s
}
