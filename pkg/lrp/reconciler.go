package lrp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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

// pinPatience is how long the controller keeps asking for kube-dns-upstream's
// previous address before it gives up and takes a new one.
const pinPatience = 30 * time.Second

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
	// ReasonWithdrawn: the redirect's ports change; the policy is deleted
	// until every cache pod runs the new template.
	ReasonWithdrawn = "PolicyWithdrawn"
	// ReasonWaiting: no policy yet, and why.
	ReasonWaiting = "WaitingForCache"
	// ReasonFailed: a read or write of an object failed; the note carries
	// the API's message.
	ReasonFailed = "ReconcileFailed"
	// ReasonUpstreamAddress: kube-dns-upstream had to be re-created on
	// another address than the running caches use.
	ReasonUpstreamAddress = "UpstreamAddressChanged"
)

// +kubebuilder:rbac:groups=apps,namespace=kube-system,resources=daemonsets,verbs=get;list;watch
// blockOwnerDeletion on our owner references to the DaemonSet needs update on
// its finalizers where OwnerReferencesPermissionEnforcement is on (OpenShift).
// +kubebuilder:rbac:groups=apps,namespace=kube-system,resources=daemonsets/finalizers,resourceNames=node-local-dns,verbs=update
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
	// upstreamIPs are the ClusterIPs kube-dns-upstream had when last seen:
	// the running caches forward to them, so a re-created Service asks for
	// them again.
	upstreamIPs []string
	// pinningSince is when re-creating kube-dns-upstream on its previous
	// address first failed.
	pinningSince time.Time
	// waiting is the last reason the policy was not created, so that it is
	// said once.
	waiting wait

	skipNameValidation bool
}

// Reconcile implements reconcile.Reconciler. A failed read or write is an
// Event on the DaemonSet naming the object and the API's message, and counts
// in lrpdns_controller_reconcile_errors_total.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (res ctrl.Result, err error) {
	ds := &appsv1.DaemonSet{}
	err = r.Client.Get(ctx, r.key(r.Names.DaemonSet), ds)
	if apierrors.IsNotFound(err) || (err == nil && ds.DeletionTimestamp != nil) {
		err = r.removeAll(ctx)
		if err != nil {
			reconcileErrors.Inc()
		}
		return ctrl.Result{}, err
	}
	if err != nil {
		reconcileErrors.Inc()
		return ctrl.Result{}, fmt.Errorf("failed to get DaemonSet: %w", err)
	}
	defer func() {
		if err != nil {
			reconcileErrors.Inc()
			r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonFailed, "Reconcile", "%s", err.Error())
		}
	}()
	return r.reconcile(ctx, ds)
}

func (r *Reconciler) reconcile(ctx context.Context, ds *appsv1.DaemonSet) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
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
	cur, err := r.currentPolicy(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}

	// Compute both desired objects before writing anything.
	upstream, err := DesiredUpstreamService(r.Names, kubeDNS, ds, cur)
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
	return res, r.ensurePolicy(ctx, ds, cur, policy)
}

// currentPolicy is our policy, or nil when there is none.
func (r *Reconciler) currentPolicy(ctx context.Context) (*ciliumv2.CiliumLocalRedirectPolicy, error) {
	cur := &ciliumv2.CiliumLocalRedirectPolicy{}
	err := r.Client.Get(ctx, r.key(r.Names.Policy), cur)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get CiliumLocalRedirectPolicy %s: %w", klog.KRef(r.Names.Namespace, r.Names.Policy), err)
	}
	return cur, nil
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

// ensurePolicy creates the policy once the cache can take traffic, withdraws
// it when its immutable spec must change, and repairs our metadata.
//
// A changed spec is never applied over running pods: Cilium redirects a
// frontend once a ready local pod has a port of the frontend's name, then
// keeps only backends with the policy's port numbers, so a policy with new
// numbers over a node that still runs only old pods leaves that node a
// redirect with no backend. The policy is deleted instead (clients fall back
// to kube-dns), and created again only once every node runs the current pod
// template (see cacheReady).
func (r *Reconciler) ensurePolicy(ctx context.Context, ds *appsv1.DaemonSet, cur, want *ciliumv2.CiliumLocalRedirectPolicy) error {
	log := logf.FromContext(ctx)
	if cur != nil && specChanged(cur, want) {
		if err := r.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete CiliumLocalRedirectPolicy %s to change its ports: %w", klog.KObj(cur), err)
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonWithdrawn, "Delete",
			"the redirect changes (frontend %s -> %s, backend %s -> %s) and its spec is immutable: withdrawn, DNS goes to %s until every %s pod runs the new template, then re-created",
			describePolicyPorts(cur.Spec.RedirectFrontend.ServiceMatcher), describePolicyPorts(want.Spec.RedirectFrontend.ServiceMatcher),
			describeBackendPorts(cur.Spec.RedirectBackend.ToPorts), describeBackendPorts(want.Spec.RedirectBackend.ToPorts),
			r.Names.KubeDNSService, ds.Name)
		log.Info("withdrew CiliumLocalRedirectPolicy until the rollout completes", "policy", klog.KObj(cur))
		cur = nil
	}
	if cur == nil {
		w, err := r.cacheReady(ctx, ds)
		if err != nil {
			return err
		}
		if w != (wait{}) {
			if w != r.waiting {
				r.waiting = w
				r.Events.Eventf(ds, nil, corev1.EventTypeNormal, ReasonWaiting, w.action, "not redirecting yet: %s", w.note)
				log.Info("not redirecting yet", "reason", w.note, "daemonset", klog.KObj(ds))
			}
			return nil
		}
		r.waiting = wait{}
		if err := r.apply(ctx, want); err != nil {
			return err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Create",
			"redirecting Service %s/%s (%s) to the local %s pod (%s)", r.Names.Namespace, r.Names.KubeDNSService,
			describePolicyPorts(want.Spec.RedirectFrontend.ServiceMatcher), ds.Name, describeBackendPorts(want.Spec.RedirectBackend.ToPorts))
		log.Info("created CiliumLocalRedirectPolicy", "policy", klog.KObj(want))
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

// specChanged reports whether an immutable field differs.
func specChanged(cur, want *ciliumv2.CiliumLocalRedirectPolicy) bool {
	return !equality.Semantic.DeepEqual(cur.Spec.RedirectFrontend, want.Spec.RedirectFrontend) ||
		!equality.Semantic.DeepEqual(cur.Spec.RedirectBackend, want.Spec.RedirectBackend) ||
		cur.Spec.SkipRedirectFromBackend != want.Spec.SkipRedirectFromBackend
}

// applyUpstream creates or repairs kube-dns-upstream. Its address is what
// every running cache forwards cluster names to (the kubelet put it in their
// environment at start), so a Service that went away is re-created on the
// same ClusterIPs.
func (r *Reconciler) applyUpstream(ctx context.Context, ds *appsv1.DaemonSet, want *corev1.Service) error {
	cur := &corev1.Service{}
	err := r.Client.Get(ctx, r.key(want.Name), cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to get Service %s: %w", klog.KObj(want), err)
	}
	if err == nil {
		r.upstreamIPs = cur.Spec.ClusterIPs
		if !serviceDrifted(cur, want) {
			return nil
		}
		if err := r.apply(ctx, want); err != nil {
			return err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonRepaired, "Update", "restored Service %s to kube-dns's selector and DNS ports", want.Name)
		logf.FromContext(ctx).Info("repaired upstream Service", "service", klog.KObj(want))
		return nil
	}
	if len(r.upstreamIPs) > 0 {
		pinned := want.DeepCopy()
		pinned.Spec.ClusterIP, pinned.Spec.ClusterIPs = r.upstreamIPs[0], r.upstreamIPs
		err := r.apply(ctx, pinned)
		if err == nil {
			r.pinningSince = time.Time{}
			r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Recreate",
				"re-created Service %s on its previous address %s, which the running caches forward to", want.Name, strings.Join(r.upstreamIPs, ","))
			logf.FromContext(ctx).Info("re-created upstream Service on its previous address", "service", klog.KObj(want), "clusterIPs", r.upstreamIPs)
			return nil
		}
		if !apierrors.IsInvalid(err) {
			return err
		}
		// The API server releases a deleted Service's address shortly
		// after the deletion: until then it is "already allocated".
		if r.pinningSince.IsZero() {
			r.pinningSince = time.Now()
		}
		if time.Since(r.pinningSince) < pinPatience {
			return err
		}
		r.pinningSince = time.Time{}
		r.Events.Eventf(ds, want, corev1.EventTypeWarning, ReasonUpstreamAddress, "Create",
			"could not re-create Service %s on its previous address %s for %s (%v): it gets a new one, and caches started before forward cluster names to the old address until they restart (kubectl -n %s rollout restart daemonset %s)",
			want.Name, strings.Join(r.upstreamIPs, ","), pinPatience, err, ds.Namespace, ds.Name)
	}
	if err := r.apply(ctx, want); err != nil {
		return err
	}
	r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Create", "created Service %s for the cache's cluster-domain forwards", want.Name)
	logf.FromContext(ctx).Info("created upstream Service", "service", klog.KObj(want))
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

// removeAll takes the redirect away once the DaemonSet is gone, without
// waiting for the garbage collector. kube-dns-upstream is left to the
// garbage collector: it is owned by the DaemonSet and by the policy, so it
// goes only after both, and no cache forwards to a deleted Service while
// clients are still redirected to it.
func (r *Reconciler) removeAll(ctx context.Context) error {
	if served, err := r.policiesServed(); err != nil || !served {
		return err
	}
	deleted, err := r.deleteOwned(ctx, &ciliumv2.CiliumLocalRedirectPolicy{}, r.Names.Policy)
	if err != nil {
		return err
	}
	if deleted {
		logf.FromContext(ctx).Info("DaemonSet gone: removed CiliumLocalRedirectPolicy; DNS falls back to kube-dns", "policy", klog.KRef(r.Names.Namespace, r.Names.Policy))
	}
	return nil
}

// deleteOwned deletes the named object if it carries our managed-by label.
func (r *Reconciler) deleteOwned(ctx context.Context, obj client.Object, name string) (bool, error) {
	if err := r.Client.Get(ctx, r.key(name), obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("failed to get %T %s: %w", obj, klog.KRef(r.Names.Namespace, name), err)
	}
	if obj.GetLabels()[ManagedByLabel] != ManagedByValue {
		return false, nil
	}
	uid := obj.GetUID()
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid}); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("failed to delete %T %s: %w", obj, klog.KObj(obj), err)
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

func describePolicyPorts(m *ciliumv2.ServiceInfo) string {
	if m == nil {
		return "none"
	}
	return describeBackendPorts(m.ToPorts)
}

func describeBackendPorts(ports []ciliumv2.PortInfo) string {
	s := make([]string, 0, len(ports))
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%s %s/%s", p.Name, p.Port, p.Protocol))
	}
	return strings.Join(s, ", ")
}
