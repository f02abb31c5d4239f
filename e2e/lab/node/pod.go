package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podRuntime is one pod: its network namespace, volumes and processes.
type podRuntime struct {
	a         *Agent
	pod       *corev1.Pod
	dir       string
	netns     string
	ip        string   // the first of ips, which the sandbox sets once, under mu
	ips       []string // every address, IPv4 first on a dual-stack node
	startedAt metav1.Time

	mu         sync.Mutex
	containers []*container
	// gates are the pod's conditions as last seen on the API server, for
	// its readiness gates.
	gates       map[corev1.PodConditionType]bool
	terminating bool
	stopped     chan struct{}
	stopOnce    sync.Once
	cancel      context.CancelFunc
}

type container struct {
	spec     corev1.Container
	argv     []string
	mounts   []mount
	log      *os.File
	cmd      *exec.Cmd
	running  bool
	ready    bool
	restarts int32
	started  metav1.Time
	exited   chan struct{}
}

func newPodRuntime(a *Agent, pod *corev1.Pod) *podRuntime {
	uid := string(pod.UID)
	netns := "lab-" + uid[:8]
	if pod.Spec.HostNetwork {
		netns = a.cfg.NodeNetns // the node's own: never created or removed here
	}
	return &podRuntime{
		a:       a,
		pod:     pod.DeepCopy(),
		dir:     filepath.Join(a.cfg.Dir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, uid[:8])),
		netns:   netns,
		stopped: make(chan struct{}),
	}
}

func (p *podRuntime) logf(msg string, args ...any) {
	p.a.cfg.Log.Info(msg, append([]any{"pod", p.pod.Namespace + "/" + p.pod.Name}, args...)...)
}

// start sets the pod up and runs its containers; a failure is written to the
// pod's status.
func (p *podRuntime) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	if err := p.setup(ctx); err != nil {
		p.logf("pod setup failed", "err", err)
		p.writeStatus(ctx, err.Error())
		return
	}
	p.logf("pod running", "ip", p.ip, "netns", p.netns)
	p.writeStatus(ctx, "")
}
