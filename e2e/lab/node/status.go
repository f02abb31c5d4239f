package node

import (
	"context"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// writeStatus writes phase, addresses, conditions and container statuses.
func (p *podRuntime) writeStatus(ctx context.Context, failure string) {
	p.mu.Lock()
	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
	}
	// Readiness comes from the probes, also while terminating, as the
	// kubelet's: a pod drains only if its own readiness says so. The pod is
	// Ready when its containers are and every readiness gate is True.
	allReady := len(p.containers) == len(p.pod.Spec.Containers)
	var statuses []corev1.ContainerStatus
	for _, c := range p.containers {
		started := c.running // a copy: the status is marshalled after the lock is released
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: "lab://" + c.argv[0], ContainerID: "lab://" + p.netns + "/" + c.spec.Name,
			Ready: c.ready, RestartCount: c.restarts, Started: &started,
		}
		if c.running {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.started}
		} else {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
		}
		statuses = append(statuses, cs)
		allReady = allReady && c.ready
	}
	ip, ips := p.ip, p.ips
	gatesOpen := gatesTrue(p.pod.Spec.ReadinessGates, p.gates)
	p.mu.Unlock()
	status := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    p.a.cfg.NodeIP,
		HostIPs:   []corev1.HostIP{{IP: p.a.cfg.NodeIP}},
		StartTime: &p.startedAt,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true),
			cond(corev1.ContainersReady, allReady), cond(corev1.PodReady, allReady && gatesOpen),
		},
		ContainerStatuses: statuses,
	}
	if ip != "" {
		status.PodIP = ip
		for _, a := range ips {
			status.PodIPs = append(status.PodIPs, corev1.PodIP{IP: a})
		}
	}
	if failure != "" {
		status.Phase, status.Reason, status.Message = corev1.PodPending, "LabSetupFailed", failure
	}
	// A strategic merge keeps the conditions others own (readiness gates).
	patch, err := json.Marshal(map[string]any{"status": status})
	if err == nil {
		_, err = p.a.cs.CoreV1().Pods(p.pod.Namespace).Patch(ctx, p.pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	}
	if err != nil && ctx.Err() == nil {
		p.logf("failed to write pod status", "err", err)
	}
}

// observe takes the readiness gates' conditions from the pod as the API
// server has it, and writes the status again when they changed Ready.
func (p *podRuntime) observe(ctx context.Context, pod *corev1.Pod) {
	if len(p.pod.Spec.ReadinessGates) == 0 {
		return
	}
	gates := map[corev1.PodConditionType]bool{}
	for _, c := range pod.Status.Conditions {
		gates[c.Type] = c.Status == corev1.ConditionTrue
	}
	p.mu.Lock()
	before := gatesTrue(p.pod.Spec.ReadinessGates, p.gates)
	p.gates = gates
	after := gatesTrue(p.pod.Spec.ReadinessGates, p.gates)
	p.mu.Unlock()
	if before != after {
		p.logf("readiness gates changed", "open", after)
		p.writeStatus(ctx, "")
	}
}

// gatesTrue says whether every readiness gate's condition is True; a gate
// without its condition is closed, as the kubelet has it.
func gatesTrue(gates []corev1.PodReadinessGate, conditions map[corev1.PodConditionType]bool) bool {
	for _, g := range gates {
		if !conditions[g.ConditionType] {
			return false
		}
	}
	return true
}
