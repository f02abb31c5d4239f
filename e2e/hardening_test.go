//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/e2e/judge"
)

// observeScript prints, on a node, what a container's main process runs
// as: /proc/PID/status, the result of a write at its root (through
// /proc/PID/root, which takes the container's own mounts), its memory
// cgroup's limit and peak. $1 is the container ID.
const observeScript = `set -e
pid=$(crictl inspect --output go-template --template '{{.info.pid}}' "$1")
cat /proc/$pid/status
echo '--- write'
if out=$(touch /proc/$pid/root/.lrpdns-e2e-write 2>&1); then echo WROTE; rm -f /proc/$pid/root/.lrpdns-e2e-write; else echo "$out"; fi
echo '--- memory'
if m=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/$pid/cgroup | cut -d: -f3) && [ -n "$m" ]; then
  d=/sys/fs/cgroup/memory$m; cat "$d/memory.limit_in_bytes" "$d/memory.max_usage_in_bytes"
else
  d=/sys/fs/cgroup$(grep '^0::' /proc/$pid/cgroup | cut -d: -f3); cat "$d/memory.max" "$d/memory.peak"
fi
`

// observe runs observeScript on the pod's node for its first container.
func (s *suite) observe(ctx context.Context, pod *corev1.Pod) (judge.Process, error) {
	if len(pod.Status.ContainerStatuses) == 0 {
		return judge.Process{}, fmt.Errorf("pod %s has no container status", pod.Name)
	}
	_, id, ok := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
	if !ok {
		return judge.Process{}, fmt.Errorf("pod %s: container ID %q", pod.Name, pod.Status.ContainerStatuses[0].ContainerID)
	}
	out, err := s.cluster.NodeExec(ctx, pod.Spec.NodeName, "bash", "-c", observeScript, "observe", id)
	if err != nil {
		return judge.Process{}, err
	}
	status, rest, _ := strings.Cut(out, "--- write\n")
	write, memory, _ := strings.Cut(rest, "--- memory\n")
	p := judge.Process{Status: status, RootWrite: strings.TrimSpace(write)}
	if p.RootWrite == "WROTE" {
		p.RootWrite = ""
	}
	lines := strings.Fields(memory)
	if len(lines) != 2 {
		return p, fmt.Errorf("pod %s: memory cgroup %q", pod.Name, memory)
	}
	if p.MemoryLimit, err = judge.MemoryLimit(lines[0]); err != nil {
		return p, err
	}
	_, _ = fmt.Sscan(lines[1], &p.MemoryPeak)
	return p, nil
}

// hardening checks, from each node, that the cache runs exactly as
// shipped: its user, no capabilities, no privilege escalation, a seccomp
// filter, a root filesystem that refuses writes, and its memory limit with
// the peak below it. The same observation of the suite's probe client (our
// lrpdns image with no security context) must find it unhardened: a check
// that passes that pod sees nothing.
func (s *suite) hardening(t *testing.T) {
	ctx := t.Context()
	ds := s.cacheDaemonSet(t)
	c := ds.Spec.Template.Spec.Containers[0]
	want := judge.Shipped{UID: 65532, MemoryLimit: c.Resources.Limits.Memory().Value()}
	if u := ds.Spec.Template.Spec.SecurityContext; u != nil && u.RunAsUser != nil {
		want.UID = int(*u.RunAsUser)
	}
	pods := s.cacheObjects(t)
	if len(pods) == 0 {
		fatal(t, "no cache pod")
	}
	for i := range pods {
		p, err := s.observe(ctx, &pods[i])
		if errors.Is(err, ErrNoNodeExec) {
			t.Skipf("%v: the lab's node agent enforces no security context or memory limit; kind (make e2e) checks this", err)
		}
		if err != nil {
			fatalf(t, "observing %s on %s: %v", pods[i].Name, pods[i].Spec.NodeName, err)
		}
		if bad := judge.Hardening(p, want); len(bad) > 0 {
			errorf(t, "%s on %s does not run as shipped: %s", pods[i].Name, pods[i].Spec.NodeName, strings.Join(bad, "; "))
			continue
		}
		t.Logf("%s on %s runs as shipped: uid %d, no capabilities, root filesystem read-only (%q), memory limit %d MiB, peak %.1f MiB",
			pods[i].Name, pods[i].Spec.NodeName, want.UID, p.RootWrite, p.MemoryLimit>>20, float64(p.MemoryPeak)/(1<<20))
	}
	client := &corev1.Pod{}
	if err := s.c.Get(ctx, clientKey(clientPod), client); err != nil {
		fatal(t, err)
	}
	p, err := s.observe(ctx, client)
	if err != nil {
		fatalf(t, "observing the probe client: %v", err)
	}
	bad := judge.Hardening(p, want)
	if len(bad) == 0 {
		errorf(t, "negative control: the probe client (no security context) passes the hardening check: it cannot see an unhardened pod")
	}
	t.Logf("negative control: the probe client (no security context) fails it: %s", strings.Join(bad, "; "))
}

func clientKey(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: "default", Name: name}
}

// cacheDaemonSet is the cache's DaemonSet as it is now.
func (s *suite) cacheDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ds := &appsv1.DaemonSet{}
	if err := s.c.Get(t.Context(), s.dsKey(), ds); err != nil {
		fatal(t, err)
	}
	return ds
}
