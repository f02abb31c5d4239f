package lrp

import (
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/clock"
)

// quietWindow is how long an Event with the same regarding object, type,
// reason, action and note is not sent again.
const quietWindow = 30 * time.Minute

// quietRecorder sends an Event once per state: the events library keys a
// series on the regarding object's reference, resourceVersion included, so
// an Event about the DaemonSet made anew on each of its status updates
// starts a new series each time (40 status updates with Cilium's redirect
// disabled made 40 Events; a 50-node rollout 51). It refers to objects
// without their resourceVersion, and leaves out an Event it sent in the
// last quietWindow.
type quietRecorder struct {
	events.EventRecorder
	scheme *runtime.Scheme
	clock  clock.PassiveClock

	mu   sync.Mutex
	sent map[string]time.Time
}

func newQuietRecorder(r events.EventRecorder, scheme *runtime.Scheme, c clock.PassiveClock) *quietRecorder {
	return &quietRecorder{EventRecorder: r, scheme: scheme, clock: c, sent: map[string]time.Time{}}
}

// Eventf implements events.EventRecorder.
func (q *quietRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	regarding, related = q.stable(regarding), q.stable(related)
	text := fmt.Sprintf(note, args...)
	key := fmt.Sprintf("%v|%s|%s|%s|%s", regarding, eventtype, reason, action, text)
	now := q.clock.Now()
	q.mu.Lock()
	if at, ok := q.sent[key]; ok && now.Sub(at) < quietWindow {
		q.mu.Unlock()
		return
	}
	for k, at := range q.sent { // keep the map small
		if now.Sub(at) >= quietWindow {
			delete(q.sent, k)
		}
	}
	q.sent[key] = now
	q.mu.Unlock()
	q.EventRecorder.Eventf(regarding, related, eventtype, reason, action, "%s", text)
}

// stable is a reference to obj without its resourceVersion, or obj when it
// has none to give.
func (q *quietRecorder) stable(obj runtime.Object) runtime.Object {
	if obj == nil {
		return nil
	}
	if r, ok := obj.(*corev1.ObjectReference); ok {
		c := *r
		c.ResourceVersion = ""
		return &c
	}
	ref, err := reference.GetReference(q.scheme, obj)
	if err != nil {
		return obj
	}
	ref.ResourceVersion = ""
	return ref
}
