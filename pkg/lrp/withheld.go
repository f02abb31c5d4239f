package lrp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// withheldWarning is how long the redirect may wait for the caches before
// a Warning names the nodes that hold it up. A rollout of a few hundred
// nodes at the shipped maxUnavailable takes minutes; a pod that never
// finishes terminating (a stuck volume, a node gone NotReady) keeps every
// node off the cache until someone looks.
const withheldWarning = 10 * time.Minute

// maxHolders bounds the nodes one Warning names.
const maxHolders = 10

func (r *Reconciler) withheldAfter() time.Duration {
	if r.WithheldWarning > 0 {
		return r.WithheldWarning
	}
	return withheldWarning
}

// withheld records that the redirect waits for w, sends the Warning once
// the wait is longer than withheldAfter, and returns when to look again.
func (r *Reconciler) withheld(ctx context.Context, ds *appsv1.DaemonSet, w wait) time.Duration {
	if r.waitingSince.IsZero() {
		r.waitingSince = time.Now()
		waitingSince.Set(float64(r.waitingSince.Unix()))
	}
	if r.withheldWarned {
		return w.retry
	}
	after := r.withheldAfter()
	held := time.Since(r.waitingSince)
	if held < after {
		// Nothing watched may change before then: come back for the
		// Warning.
		return minPositive(w.retry, after-held)
	}
	r.withheldWarned = true
	holders := r.holders(ctx, ds)
	r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonWithheld, w.action,
		"no redirect for %v: %s; held up by %s", held.Round(time.Second), w.note, holders)
	logf.FromContext(ctx).Info("redirect withheld", "for", held.Round(time.Second), "reason", w.note, "heldUpBy", holders, "daemonset", klog.KObj(ds))
	return w.retry
}

// minPositive is the sooner of two retries, 0 meaning none.
func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || b > 0 && b < a {
		return b
	}
	return a
}

// holders names the nodes whose cache pods keep the redirect waiting: a pod
// that is terminating, or not ready. The pods are read once, uncached, when
// the Warning is sent.
func (r *Reconciler) holders(ctx context.Context, ds *appsv1.DaemonSet) string {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return fmt.Sprintf("nodes unknown (the DaemonSet's selector: %v)", err)
	}
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(ds.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return fmt.Sprintf("nodes unknown (failed to list the cache pods: %v)", err)
	}
	var held []string
	for _, p := range pods.Items {
		if !ownedBy(p.OwnerReferences, ds.UID) {
			continue
		}
		node := p.Spec.NodeName
		if node == "" {
			node = "no node yet"
		}
		switch {
		case p.DeletionTimestamp != nil:
			held = append(held, fmt.Sprintf("%s (pod %s terminating since %s)", node, p.Name, p.DeletionTimestamp.UTC().Format(time.RFC3339)))
		case !podReady(&p):
			held = append(held, fmt.Sprintf("%s (pod %s not ready)", node, p.Name))
		}
	}
	if len(held) == 0 {
		return "no terminating or unready cache pod (the DaemonSet controller's status lags)"
	}
	slices.Sort(held)
	more := ""
	if len(held) > maxHolders {
		more = fmt.Sprintf(" and %d more", len(held)-maxHolders)
		held = held[:maxHolders]
	}
	return strings.Join(held, ", ") + more
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
