package lrp

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// wait says why no policy is created yet; the zero value means none. Its
// action is the Event's: events.k8s.io merges Events of one reason and
// action into a series that keeps the first note, so each cause has its own.
// retry, when set, is when to look again: nothing watched changes then.
type wait struct {
	action, note string
	retry        time.Duration
}

// upstreamSettle is how old kube-dns-upstream must be before a policy sends
// clients to caches that forward to it. Its endpoints exist long before
// Cilium programs a new Service: in the lab, a Service re-created at
// 03:09:49 was translated a second later, and a cache miss forwarded in
// between waited 2 s.
const upstreamSettle = 5 * time.Second

func (r *Reconciler) settle() time.Duration {
	if r.UpstreamSettle > 0 {
		return r.UpstreamSettle
	}
	return upstreamSettle
}

// cacheReady reports whether a policy built from the DaemonSet's template
// matches every pod that can be ready (rolledOut), some pod is ready, and the
// upstream Service has ready endpoints: only then does a redirect help.
//
// The endpoints must be the current Service's: slices of a deleted
// kube-dns-upstream of the same name linger until the garbage collector
// takes them, and a policy created on their word right after the Service
// was re-created would send misses to an address Cilium has not programmed.
func (r *Reconciler) cacheReady(ctx context.Context, ds *appsv1.DaemonSet, upstream *corev1.Service) (wait, error) {
	if w := rolledOut(ds); w != (wait{}) {
		return w, nil
	}
	settle := r.settle()
	young := wait{"WaitForUpstream", fmt.Sprintf("Service %s/%s is younger than %v: waiting for Cilium to program it",
		r.Names.Namespace, r.Names.UpstreamService, settle), settle}
	if upstream == nil {
		return young, nil
	}
	// Its age by this process's clock, from when it first saw this Service:
	// the API server's creation timestamp is another machine's clock, and a
	// controller clock ahead of it by the settle time would find a Service
	// created a moment ago already settled.
	now := r.now()
	if r.upstreamSeen.uid != upstream.UID {
		r.upstreamSeen.uid, r.upstreamSeen.at = upstream.UID, now
	}
	if age := now.Sub(r.upstreamSeen.at); age < settle {
		young.retry = settle - age
		return young, nil
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.Client.List(ctx, slices, client.InNamespace(r.Names.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: r.Names.UpstreamService}); err != nil {
		return wait{}, fmt.Errorf("failed to list EndpointSlices: %w", err)
	}
	for _, s := range slices.Items {
		if !ownedBy(s.OwnerReferences, upstream.UID) {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return wait{}, nil
			}
		}
	}
	return wait{action: "WaitForUpstream", note: fmt.Sprintf("Service %s/%s has no ready endpoints", r.Names.Namespace, r.Names.UpstreamService)}, nil
}

// rolledOut says what is missing before every node runs the DaemonSet's
// current pod template and some pod is ready, so that a policy built from
// that template has a backend on every node with a ready cache pod.
//
// The DaemonSet controller counts a node as updated by its oldest pod, and a
// pod in its lameduck period (terminating, not yet gone) is still the oldest:
// UpdatedNumberScheduled reaches DesiredNumberScheduled only once no pod of
// an older template is left anywhere.
func rolledOut(ds *appsv1.DaemonSet) wait {
	st := ds.Status
	switch {
	case st.ObservedGeneration < ds.Generation:
		return wait{action: "WaitForGeneration", note: fmt.Sprintf("the DaemonSet controller has not yet seen generation %d of DaemonSet %s/%s", ds.Generation, ds.Namespace, ds.Name)}
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return wait{action: "WaitForRollout", note: fmt.Sprintf("DaemonSet %s/%s is rolling out: %d of %d nodes run the current pod template",
			ds.Namespace, ds.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled)}
	case st.NumberReady == 0:
		return wait{action: "WaitForReadyPod", note: fmt.Sprintf("DaemonSet %s/%s has no ready pods", ds.Namespace, ds.Name)}
	}
	return wait{}
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}
