package lrp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Re-creating kube-dns-upstream on its previous addresses. The API server
// frees a deleted Service's addresses just after the deletion, one family
// after the other (1.33 and later: one IPAddress object each). A
// dual-stack create that meets one family freed and the other not fails,
// and the API server (1.36) keeps the family it had taken for the failed
// create: that address is "already allocated" until its repair loop
// deletes the orphan 60 s later. So a dual-stack Service is asked for its
// addresses only pinSettle after it was found gone, a failed ask is
// repeated every pinRetry, and the controller waits pinPatience, more than
// the repair loop's 60 s, before it gives up and takes new addresses.
const (
	pinSettle   = time.Second
	pinRetry    = 500 * time.Millisecond
	pinPatience = 90 * time.Second
)

// applyUpstream creates or repairs kube-dns-upstream. Its address is what
// every running cache forwards cluster names to (the kubelet put it in their
// environment at start), so a Service that went away is re-created on the
// same ClusterIPs. A positive wait: nothing was written, ask again then.
//
// redirecting says the kube-dns redirect exists: caches have been serving
// with the Service (the redirect waits for its endpoints).
func (r *Reconciler) applyUpstream(ctx context.Context, ds *appsv1.DaemonSet, want *corev1.Service, redirecting bool) (_ *corev1.Service, wait time.Duration, _ error) {
	cur := &corev1.Service{}
	err := r.Client.Get(ctx, r.key(want.Name), cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, 0, fmt.Errorf("failed to get Service %s: %w", klog.KObj(want), err)
	}
	if err == nil {
		r.upstreamIPs, r.upstreamGone = cur.Spec.ClusterIPs, time.Time{}
		if !serviceDrifted(cur, want) {
			return cur, 0, nil
		}
		// On its address: if the cached Service was in fact deleted a moment
		// ago, server-side apply creates it, and must not pick a new one.
		repaired := want.DeepCopy()
		repaired.Spec.ClusterIP, repaired.Spec.ClusterIPs = cur.Spec.ClusterIP, cur.Spec.ClusterIPs
		if err := r.apply(ctx, repaired); err != nil {
			return nil, 0, err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonRepaired, "Update", "restored Service %s to kube-dns's selector and DNS ports", want.Name)
		logf.FromContext(ctx).Info("repaired upstream Service", "service", klog.KObj(want))
		return cur, 0, nil
	}
	if len(r.upstreamIPs) > 0 {
		if r.upstreamGone.IsZero() {
			r.upstreamGone = time.Now()
		}
		gone := time.Since(r.upstreamGone)
		if len(r.upstreamIPs) > 1 && gone < pinSettle {
			return nil, pinSettle - gone, nil
		}
		pinned := want.DeepCopy()
		pinned.Spec.ClusterIP, pinned.Spec.ClusterIPs = r.upstreamIPs[0], r.upstreamIPs
		err := r.apply(ctx, pinned)
		if err == nil {
			r.upstreamGone = time.Time{}
			r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Recreate",
				"re-created Service %s on its previous address %s, which the running caches forward to", want.Name, strings.Join(r.upstreamIPs, ","))
			logf.FromContext(ctx).Info("re-created upstream Service on its previous address", "service", klog.KObj(want), "clusterIPs", r.upstreamIPs, "after", gone.Round(time.Millisecond))
			return nil, 0, nil // a new Service: its endpoints are not known yet
		}
		if !apierrors.IsInvalid(err) {
			return nil, 0, err
		}
		// "Already allocated": not freed yet, or taken.
		if gone < pinPatience {
			logf.FromContext(ctx).V(1).Info("previous address of the upstream Service not free yet; asking again", "service", klog.KObj(want), "clusterIPs", r.upstreamIPs, "error", err.Error(), "after", pinRetry)
			return nil, pinRetry, nil
		}
		r.upstreamGone = time.Time{}
		r.Events.Eventf(ds, want, corev1.EventTypeWarning, ReasonUpstreamAddress, "Create",
			"could not re-create Service %s on its previous address %s for %s (%v): it gets a new one, and caches started before forward cluster names to the old address until they restart (kubectl -n %s rollout restart daemonset %s)",
			want.Name, strings.Join(r.upstreamIPs, ","), pinPatience, err, ds.Namespace, ds.Name)
	}
	if len(r.upstreamIPs) == 0 && redirecting {
		r.Events.Eventf(ds, want, corev1.EventTypeWarning, ReasonUpstreamAddress, "Create",
			"Service %s is gone and its address was not recorded on the redirect %s: it gets a new one, and caches started before forward cluster names to the old address until they restart (kubectl -n %s rollout restart daemonset %s)",
			want.Name, r.Names.Policy, ds.Namespace, ds.Name)
	}
	if err := r.apply(ctx, want); err != nil {
		return nil, 0, err
	}
	r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Create", "created Service %s for the cache's cluster-domain forwards", want.Name)
	logf.FromContext(ctx).Info("created upstream Service", "service", klog.KObj(want))
	return nil, 0, nil // a new Service: its endpoints are not known yet
}

// recordedUpstreamIPs are the kube-dns-upstream addresses the kube-dns
// redirect p records, if every one is an IP address; a hand-edited value
// that is not is left alone (and overwritten once the Service is seen).
func recordedUpstreamIPs(ctx context.Context, p *ciliumv2.CiliumLocalRedirectPolicy) []string {
	if p == nil || p.Annotations[UpstreamIPsAnnotation] == "" {
		return nil
	}
	v := p.Annotations[UpstreamIPsAnnotation]
	ips := strings.Split(v, ",")
	for _, ip := range ips {
		if _, err := netip.ParseAddr(ip); err != nil {
			logf.FromContext(ctx).Info("ignoring the recorded upstream addresses: not IP addresses", "policy", klog.KObj(p), "annotation", UpstreamIPsAnnotation, "value", v)
			return nil
		}
	}
	return ips
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

// removePolicy deletes our redirects so DNS falls back to kube-dns.
func (r *Reconciler) removePolicy(ctx context.Context, ds *appsv1.DaemonSet, why string) error {
	deleted, err := r.deletePolicies(ctx, nil)
	if err != nil || len(deleted) == 0 {
		return err
	}
	r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonRemoved, "Delete",
		"removed CiliumLocalRedirectPolicy %s so DNS falls back to kube-dns: %s", strings.Join(deleted, ", "), why)
	logf.FromContext(ctx).Info("removed CiliumLocalRedirectPolicy", "policies", deleted, "reason", why)
	return nil
}

// removeStalePolicies deletes our policies that are not wanted: the
// policy of an address no longer configured.
func (r *Reconciler) removeStalePolicies(ctx context.Context, ds *appsv1.DaemonSet, wanted []*ciliumv2.CiliumLocalRedirectPolicy) error {
	keep := map[string]bool{}
	for _, p := range wanted {
		keep[p.Name] = true
	}
	deleted, err := r.deletePolicies(ctx, keep)
	if err != nil || len(deleted) == 0 {
		return err
	}
	r.Events.Eventf(ds, nil, corev1.EventTypeNormal, ReasonRemoved, "Delete",
		"removed CiliumLocalRedirectPolicy %s: its address is no longer redirected", strings.Join(deleted, ", "))
	logf.FromContext(ctx).Info("removed CiliumLocalRedirectPolicy no longer wanted", "policies", deleted)
	return nil
}

// deletePolicies deletes every policy of this install (our managed-by
// label, part of our DaemonSet) in the namespace, but those in keep, and
// returns their names. Another install's policies are not ours to delete.
func (r *Reconciler) deletePolicies(ctx context.Context, keep map[string]bool) ([]string, error) {
	list := &ciliumv2.CiliumLocalRedirectPolicyList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Names.Namespace),
		client.MatchingLabels{ManagedByLabel: ManagedByValue, PartOfLabel: r.Names.DaemonSet}); err != nil {
		return nil, fmt.Errorf("failed to list CiliumLocalRedirectPolicies: %w", err)
	}
	var deleted []string
	for i := range list.Items {
		p := &list.Items[i]
		if keep[p.Name] {
			continue
		}
		if err := r.Client.Delete(ctx, p, client.Preconditions{UID: &p.UID}); err != nil && !apierrors.IsNotFound(err) {
			return deleted, fmt.Errorf("failed to delete CiliumLocalRedirectPolicy %s: %w", klog.KObj(p), err)
		}
		deleted = append(deleted, p.Name)
	}
	return deleted, nil
}

// upstreamDrain is how long kube-dns-upstream outlives its DaemonSet by
// default: the DaemonSet's pods are deleted with it, and each keeps serving,
// forwarding cluster names to kube-dns-upstream, through its lameduck and
// grace period (5 s and 30 s in manifests/).
const upstreamDrain = time.Minute

// removeAll takes the redirect away once the DaemonSet is gone, without
// waiting for the garbage collector, and keeps kube-dns-upstream while the
// DaemonSet's pods terminate. Left to the garbage collector, kube-dns-upstream
// would go the moment both its owners, the DaemonSet and the policy, are
// gone, while the terminating caches still answer the queries that reached
// them and forward the cluster-domain misses to it: with per-packet load
// balancing those forwards then fail (the lab lost one such query per
// client). So, when the controller knows its own pod (Self), that pod
// becomes the Service's only owner, and the controller deletes the Service
// after the drain; if the controller goes first (an uninstall), the garbage
// collector takes the Service with it, so nothing is left behind. If the
// DaemonSet comes back before the drain ends, the Service is adopted again
// as it is, on its address. It returns how soon to look again.
func (r *Reconciler) removeAll(ctx context.Context) (time.Duration, error) {
	log := logf.FromContext(ctx)
	if served, err := r.policiesServed(); err != nil || !served {
		return 0, err
	}
	up := &corev1.Service{}
	err := r.Client.Get(ctx, r.key(r.Names.UpstreamService), up)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("failed to get Service %s: %w", klog.KRef(r.Names.Namespace, r.Names.UpstreamService), err)
	}
	draining := err == nil && r.Self != nil && up.Labels[ManagedByLabel] == ManagedByValue
	if draining && !ownedOnlyBy(up.OwnerReferences, r.Self.UID) {
		up.OwnerReferences = []metav1.OwnerReference{*r.Self}
		if err := r.Client.Update(ctx, up); err != nil {
			return 0, fmt.Errorf("failed to keep Service %s for the terminating caches: %w", klog.KObj(up), err)
		}
		log.Info("DaemonSet gone: keeping the upstream Service, owned by this controller's pod, while the DaemonSet's pods terminate", "service", klog.KObj(up), "drain", r.drain())
	}
	if draining && r.drainSince.IsZero() {
		r.drainSince = time.Now()
	}
	deleted, err := r.deletePolicies(ctx, nil)
	if err != nil {
		return 0, err
	}
	if len(deleted) > 0 {
		log.Info("DaemonSet gone: removed CiliumLocalRedirectPolicy; DNS falls back to kube-dns", "policies", deleted)
	}
	if !draining {
		r.drainSince = time.Time{}
		return 0, nil
	}
	if left := r.drain() - time.Since(r.drainSince); left > 0 {
		return left, nil
	}
	if _, err := r.deleteOwned(ctx, &corev1.Service{}, r.Names.UpstreamService); err != nil {
		return 0, err
	}
	r.drainSince = time.Time{}
	log.Info("DaemonSet gone: removed the upstream Service after the drain", "service", klog.KRef(r.Names.Namespace, r.Names.UpstreamService))
	return 0, nil
}

func ownedOnlyBy(refs []metav1.OwnerReference, uid types.UID) bool {
	return len(refs) == 1 && refs[0].UID == uid
}

func (r *Reconciler) drain() time.Duration {
	if r.UpstreamDrain > 0 {
		return r.UpstreamDrain
	}
	return upstreamDrain
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
