package lrp

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// unreadyAfter is how long reconciles may fail in a row before the
// controller reports itself not ready: longer than a retry or two of a
// passing fault (a conflict, an API server restart), short enough that a
// rollout of a controller that cannot do its work stops, and kubectl get
// pods shows it.
const unreadyAfter = time.Minute

// health is the streak of failed reconciles: since when, and the last
// error. A replica that is not the leader reconciles nothing and stays
// ready.
type health struct {
	mu           sync.Mutex
	failingSince time.Time
	last         error
}

// record notes the outcome of a reconcile that ended at now.
func (h *health) record(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failingSince, h.last = time.Time{}, nil
		return
	}
	if h.failingSince.IsZero() {
		h.failingSince = now
	}
	h.last = err
}

// check says why the controller is not ready at now: reconciles have failed
// for after or longer.
func (h *health) check(now time.Time, after time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() || now.Sub(h.failingSince) < after {
		return nil
	}
	return fmt.Errorf("every reconcile has failed for %v, the last: %w", now.Sub(h.failingSince).Round(time.Second), h.last)
}

// readyCheck is the /readyz check "reconcile".
func (r *Reconciler) readyCheck(*http.Request) error {
	after := unreadyAfter
	if r.UnreadyAfter > 0 {
		after = r.UnreadyAfter
	}
	return r.health.check(r.now(), after)
}
