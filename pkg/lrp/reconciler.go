package lrp

import (
	"context"
	"errors"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// FieldOwner is the server-side apply field manager for what we write.
const FieldOwner = "lrpdns"

// defaultRecheck is how soon a reconcile that found Cilium misconfigured
// looks again: nothing the controller watches changes when cilium-config does.
const defaultRecheck = time.Minute

// +kubebuilder:rbac:groups=apps,namespace=kube-system,resources=daemonsets,verbs=get;list;watch
// blockOwnerDeletion on our owner references to the DaemonSet needs update on
// its finalizers where OwnerReferencesPermissionEnforcement is on (OpenShift).
// +kubebuilder:rbac:groups=apps,namespace=kube-system,resources=daemonsets/finalizers,resourceNames=node-local-dns,verbs=update
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=discovery.k8s.io,namespace=kube-system,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=pods,verbs=list
// +kubebuilder:rbac:groups=cilium.io,namespace=kube-system,resources=ciliumlocalredirectpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=configmaps,resourceNames=cilium-config,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,namespace=kube-system,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=kube-system,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Reconciler keeps the upstream Service and the redirect policy right.
// Every event maps to one request: the DaemonSet's name.
type Reconciler struct {
	// Client reads from the manager's scoped cache and writes.
	Client client.Client
	// APIReader reads what is not cached: the cache pods, when the
	// redirect has waited for them long enough to warn.
	APIReader client.Reader
	// CiliumReader reads Cilium's ConfigMap and agent DaemonSet from their
	// informers.
	CiliumReader client.Reader
	// CiliumVersion is the agent's release when its image has no version
	// tag; "" reads the tag.
	CiliumVersion string
	// Discovery answers whether the policy CRD is served.
	Discovery discovery.DiscoveryInterface
	Events    events.EventRecorder
	Names     Names
	Cilium    CiliumNames
	// Recheck overrides defaultRecheck when positive.
	Recheck time.Duration
	// UpstreamSettle overrides upstreamSettle when positive.
	UpstreamSettle time.Duration
	// UpstreamDrain overrides upstreamDrain when positive.
	UpstreamDrain time.Duration
	// WithheldWarning overrides withheldWarning when positive.
	WithheldWarning time.Duration
	// UnreadyAfter overrides unreadyAfter when positive.
	UnreadyAfter time.Duration
	// Self is the controller's own pod, the owner of kube-dns-upstream while
	// it drains; nil leaves the Service to the garbage collector.
	Self *metav1.OwnerReference
	// Addresses are cluster DNS addresses that are not a Service (kubelets'
	// --cluster-dns from classic NodeLocal DNSCache, such as 169.254.20.10):
	// each gets a policy of its own (DesiredAddressPolicy).
	Addresses []netip.Addr

	// watching is set at setup when policies are watched.
	watching bool
	// upstreamIPs are the ClusterIPs kube-dns-upstream had when last seen:
	// the running caches forward to them, so a re-created Service asks for
	// them again.
	upstreamIPs []string
	// upstreamGone is when kube-dns-upstream was found gone (zero: it is
	// there, or was never seen).
	upstreamGone time.Time
	// waiting is the last reason the policy was not created, so that it is
	// said once.
	waiting wait
	// waitingSince is when the current wait began (zero: not waiting), and
	// withheldWarned whether its Warning was sent.
	waitingSince   time.Time
	withheldWarned bool
	// drainSince is when the DaemonSet was found gone with kube-dns-upstream
	// still there (zero: not draining). A new leader drains again in full.
	drainSince time.Time
	// health is the streak of failed reconciles, for readiness.
	health health
	// upstreamSeen is when this process first saw kube-dns-upstream (its
	// UID): the start of its settle.
	upstreamSeen struct {
		uid types.UID
		at  time.Time
	}
	// clock is this process's time; nil: the real one.
	clock clock.PassiveClock

	skipNameValidation bool
	reconciled         func()
}

func (r *Reconciler) now() time.Time {
	if r.clock == nil {
		return time.Now()
	}
	return r.clock.Now()
}

// Reconcile implements reconcile.Reconciler. A failed read or write is an
// Event on the DaemonSet naming the object and the API's message, and counts
// in lrpdns_controller_reconcile_errors_total.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (res ctrl.Result, err error) {
	defer func() { r.health.record(err, r.now()) }()
	if r.reconciled != nil {
		r.reconciled()
	}
	ds := &appsv1.DaemonSet{}
	err = r.Client.Get(ctx, r.key(r.Names.DaemonSet), ds)
	if apierrors.IsNotFound(err) || (err == nil && ds.DeletionTimestamp != nil) {
		again, err := r.removeAll(ctx)
		if err != nil {
			reconcileErrors.Inc()
		}
		return ctrl.Result{RequeueAfter: again}, err
	}
	r.drainSince = time.Time{}
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
	cur, err := r.currentPolicy(ctx, r.Names.Policy)
	if err != nil {
		return ctrl.Result{}, err
	}

	// Compute every desired object before writing anything.
	upstream, err := DesiredUpstreamService(r.Names, kubeDNS, ds, cur)
	var policies []*ciliumv2.CiliumLocalRedirectPolicy
	if err == nil {
		policies, err = r.desiredPolicies(kubeDNS, ds)
	}
	if pe := (*PortError)(nil); errors.As(err, &pe) {
		r.Events.Eventf(ds, kubeDNS, corev1.EventTypeWarning, ReasonPortMismatch, "Check", "%s", pe.Error())
		log.Error(pe, "cannot build the redirect", "daemonset", klog.KObj(ds), "service", klog.KObj(kubeDNS))
		return ctrl.Result{}, r.removePolicy(ctx, ds, "its ports cannot match")
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(r.upstreamIPs) == 0 {
		r.upstreamIPs = recordedUpstreamIPs(ctx, cur)
	}
	// Withdrawals first, before any read or write of the upstream or of
	// Cilium's objects: a policy whose immutable spec no longer matches the
	// caches must go now, whatever those say.
	currents := map[string]*ciliumv2.CiliumLocalRedirectPolicy{r.Names.Policy: cur}
	for _, want := range policies {
		c := cur
		if want.Name != r.Names.Policy {
			if c, err = r.currentPolicy(ctx, want.Name); err != nil {
				return ctrl.Result{}, err
			}
		}
		if c, err = r.withdrawChanged(ctx, ds, c, want); err != nil {
			return ctrl.Result{}, err
		}
		currents[want.Name] = c
	}
	if cur != nil && currents[r.Names.Policy] == nil {
		// Withdrawn: the upstream no longer names it as an owner.
		if upstream, err = DesiredUpstreamService(r.Names, kubeDNS, ds, nil); err != nil {
			return ctrl.Result{}, err
		}
	}
	current, wait, err := r.applyUpstream(ctx, ds, upstream, currents[r.Names.Policy] != nil)
	if err != nil || wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, err
	}
	if len(r.upstreamIPs) > 0 {
		if policies[0].Annotations == nil {
			policies[0].Annotations = map[string]string{}
		}
		policies[0].Annotations[UpstreamIPsAnnotation] = strings.Join(r.upstreamIPs, ",")
	}

	check := r.checkCilium(ctx, ds)
	if check.noRedirect {
		return ctrl.Result{RequeueAfter: r.recheck()}, r.removePolicy(ctx, ds, check.why)
	}
	if check.noAddresses {
		policies = policies[:1] // kube-dns's alone; stale address policies go below
	}
	res := ctrl.Result{}
	if check.warned {
		res.RequeueAfter = r.recheck()
	}
	for _, want := range policies {
		retry, err := r.ensurePolicy(ctx, ds, currents[want.Name], want, current)
		if err != nil {
			return res, err
		}
		res.RequeueAfter = minPositive(res.RequeueAfter, retry)
	}
	return res, r.removeStalePolicies(ctx, ds, policies)
}

// desiredPolicies are the redirect of kube-dns and one per redirected
// address, in that order.
func (r *Reconciler) desiredPolicies(kubeDNS *corev1.Service, ds *appsv1.DaemonSet) ([]*ciliumv2.CiliumLocalRedirectPolicy, error) {
	p, err := DesiredPolicy(r.Names, kubeDNS, ds)
	if err != nil {
		return nil, err
	}
	policies := []*ciliumv2.CiliumLocalRedirectPolicy{p}
	for _, a := range r.Addresses {
		p, err := DesiredAddressPolicy(r.Names, kubeDNS, ds, a)
		if err != nil {
			return nil, err
		}
		policies = append(policies, p)
	}
	return policies, nil
}

// currentPolicy is the named policy, or nil when there is none.
func (r *Reconciler) currentPolicy(ctx context.Context, name string) (*ciliumv2.CiliumLocalRedirectPolicy, error) {
	cur := &ciliumv2.CiliumLocalRedirectPolicy{}
	err := r.Client.Get(ctx, r.key(name), cur)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get CiliumLocalRedirectPolicy %s: %w", klog.KRef(r.Names.Namespace, name), err)
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
func (r *Reconciler) ensurePolicy(ctx context.Context, ds *appsv1.DaemonSet, cur, want *ciliumv2.CiliumLocalRedirectPolicy, upstream *corev1.Service) (time.Duration, error) {
	log := logf.FromContext(ctx)
	if cur == nil {
		w, err := r.cacheReady(ctx, ds, upstream)
		if err != nil {
			return 0, err
		}
		if w != (wait{}) {
			// One Event per cause: the note's counts change with every
			// status update of a rollout; the log has them.
			if w.action != r.waiting.action {
				r.waiting = w
				r.Events.Eventf(ds, nil, corev1.EventTypeNormal, ReasonWaiting, w.action, "not redirecting yet: %s", w.note)
				log.Info("not redirecting yet", "reason", w.note, "daemonset", klog.KObj(ds))
			}
			return r.withheld(ctx, ds, w), nil
		}
		r.waiting, r.waitingSince, r.withheldWarned = wait{}, time.Time{}, false
		waitingSince.Set(0)
		if err := r.apply(ctx, want); err != nil {
			return 0, err
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonCreated, "Create",
			"redirecting %s (%s) to the local %s pod (%s)", describeFrontend(want),
			describeFrontendPorts(want), ds.Name, describeBackendPorts(want.Spec.RedirectBackend.ToPorts))
		log.Info("created CiliumLocalRedirectPolicy", "policy", klog.KObj(want))
		return 0, nil
	}
	drifted := cur.Spec.Description != want.Spec.Description || metadataDrifted(&cur.ObjectMeta, &want.ObjectMeta)
	ips := want.Annotations[UpstreamIPsAnnotation]
	if drifted || ips != "" && cur.Annotations[UpstreamIPsAnnotation] != ips {
		if err := r.apply(ctx, want); err != nil {
			return 0, err
		}
		if !drifted {
			log.Info("recorded the upstream Service's addresses on the policy", "policy", klog.KObj(want), "clusterIPs", ips)
			return 0, nil
		}
		r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonRepaired, "Update", "restored the managed labels, owner reference or description of %s", want.Name)
		log.Info("repaired CiliumLocalRedirectPolicy metadata", "policy", klog.KObj(want))
	}
	return 0, nil
}

// withdrawChanged deletes cur when its immutable spec must change, and
// returns what is left (nil then).
func (r *Reconciler) withdrawChanged(ctx context.Context, ds *appsv1.DaemonSet, cur, want *ciliumv2.CiliumLocalRedirectPolicy) (*ciliumv2.CiliumLocalRedirectPolicy, error) {
	if cur == nil || !specChanged(cur, want) {
		return cur, nil
	}
	if err := r.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsNotFound(err) {
		return cur, fmt.Errorf("failed to delete CiliumLocalRedirectPolicy %s to change its ports: %w", klog.KObj(cur), err)
	}
	r.Events.Eventf(ds, want, corev1.EventTypeNormal, ReasonWithdrawn, "Delete",
		"the redirect %s changes (frontend %s -> %s, backend %s -> %s) and its spec is immutable: withdrawn, DNS goes to %s until every %s pod runs the new template, then re-created",
		want.Name, describeFrontendPorts(cur), describeFrontendPorts(want),
		describeBackendPorts(cur.Spec.RedirectBackend.ToPorts), describeBackendPorts(want.Spec.RedirectBackend.ToPorts),
		r.fallback(want), ds.Name)
	logf.FromContext(ctx).Info("withdrew CiliumLocalRedirectPolicy until the rollout completes", "policy", klog.KObj(cur))
	return nil, nil
}

// specChanged reports whether an immutable field differs.
func specChanged(cur, want *ciliumv2.CiliumLocalRedirectPolicy) bool {
	return !equality.Semantic.DeepEqual(cur.Spec.RedirectFrontend, want.Spec.RedirectFrontend) ||
		!equality.Semantic.DeepEqual(cur.Spec.RedirectBackend, want.Spec.RedirectBackend) ||
		cur.Spec.SkipRedirectFromBackend != want.Spec.SkipRedirectFromBackend
}

// describeFrontend says what a policy redirects: a Service or an address.
func describeFrontend(p *ciliumv2.CiliumLocalRedirectPolicy) string {
	if m := p.Spec.RedirectFrontend.ServiceMatcher; m != nil {
		return "Service " + m.Namespace + "/" + m.Name
	}
	if m := p.Spec.RedirectFrontend.AddressMatcher; m != nil {
		return "address " + m.IP
	}
	return "nothing"
}

func describeFrontendPorts(p *ciliumv2.CiliumLocalRedirectPolicy) string {
	if m := p.Spec.RedirectFrontend.ServiceMatcher; m != nil {
		return describeBackendPorts(m.ToPorts)
	}
	if m := p.Spec.RedirectFrontend.AddressMatcher; m != nil {
		return describeBackendPorts(m.ToPorts)
	}
	return "none"
}

// fallback is where a policy's DNS goes while it is withdrawn: kube-dns for
// the Service's; for an address, whatever the node has there, or nothing.
func (r *Reconciler) fallback(p *ciliumv2.CiliumLocalRedirectPolicy) string {
	if m := p.Spec.RedirectFrontend.AddressMatcher; m != nil {
		return m.IP + " on each node (nothing, unless something else serves it there)"
	}
	return r.Names.KubeDNSService
}

func describeBackendPorts(ports []ciliumv2.PortInfo) string {
	s := make([]string, 0, len(ports))
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%s %s/%s", p.Name, p.Port, p.Protocol))
	}
	return strings.Join(s, ", ")
}
