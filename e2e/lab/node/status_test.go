package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestGatesTrue(t *testing.T) {
	t.Parallel()
	gate := func(names ...string) []corev1.PodReadinessGate {
		var g []corev1.PodReadinessGate
		for _, n := range names {
			g = append(g, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(n)})
		}
		return g
	}
	for _, c := range []struct {
		name  string
		gates []corev1.PodReadinessGate
		conds map[corev1.PodConditionType]bool
		want  bool
	}{
		{"no gates", nil, nil, true},
		{"gate without its condition is closed", gate("example.com/a"), nil, false},
		{"gate False", gate("example.com/a"), map[corev1.PodConditionType]bool{"example.com/a": false}, false},
		{"gate True", gate("example.com/a"), map[corev1.PodConditionType]bool{"example.com/a": true}, true},
		{"one of two True", gate("example.com/a", "example.com/b"), map[corev1.PodConditionType]bool{"example.com/a": true}, false},
		{"other conditions do not open a gate", gate("example.com/a"), map[corev1.PodConditionType]bool{corev1.PodReady: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := gatesTrue(c.gates, c.conds); got != c.want {
				t.Errorf("gatesTrue(%v, %v) = %v, want %v", c.gates, c.conds, got, c.want)
			}
		})
	}
}
