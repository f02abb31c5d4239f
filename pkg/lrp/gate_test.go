package lrp

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRolledOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		generation int64
		status     appsv1.DaemonSetStatus
		wantAction string
		wantNote   string
	}{
		{"complete", 2, appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberReady: 3}, "", ""},
		{"complete, some pods not ready", 2, appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberReady: 1}, "", ""},
		{"template change not seen yet", 3, appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberReady: 3}, "WaitForGeneration", "generation 3"},
		{"old pods left (lameduck included)", 2, appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 2, NumberReady: 3}, "WaitForRollout", "2 of 3 nodes"},
		{"nothing ready", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3}, "WaitForReadyPod", "no ready pods"},
		{"no nodes", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1}, "WaitForReadyPod", "no ready pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", Namespace: "kube-system", Generation: tc.generation}, Status: tc.status}
			w := rolledOut(ds)
			if w.action != tc.wantAction || !strings.Contains(w.note, tc.wantNote) || (tc.wantAction == "") != (w.note == "") {
				t.Errorf("rolledOut() = %+v, want action %q and a note containing %q", w, tc.wantAction, tc.wantNote)
			}
		})
	}
}
