package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podRuntime is one pod: its network namespace, volumes and processes.
type podRuntime struct {
	a         *Agent
	pod       *corev1.Pod
	dir       string
	netns     string
	ip        string
	startedAt metav1.Time

	mu          sync.Mutex
	containers  []*container
	terminating bool
	stopped     chan struct{}
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
	return &podRuntime{
		a:       a,
		pod:     pod.DeepCopy(),
		dir:     filepath.Join(a.cfg.Dir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, uid[:8])),
		netns:   "lab-" + uid[:8],
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

func (p *podRuntime) setup(ctx context.Context) error {
	p.startedAt = metav1.Now()
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	if err := run("ip", "netns", "add", p.netns); err != nil {
		return err
	}
	if err := run("ip", "-n", p.netns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	ip, err := p.a.cfg.CNI.Add(p.pod, p.netns)
	if err != nil {
		return err
	}
	p.ip = ip
	mounts, err := p.volumes(ctx)
	if err != nil {
		return err
	}
	node, err := os.ReadFile(p.a.cfg.ResolvConf)
	if err != nil {
		return fmt.Errorf("failed to read the node's resolv.conf: %w", err)
	}
	resolv, err := ResolvConf(p.pod, node, p.a.cfg.ClusterDNS, p.a.cfg.ClusterDomain)
	if err != nil {
		return err
	}
	hosts := fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", p.ip, p.pod.Name)
	if err := os.WriteFile(filepath.Join(p.dir, "resolv.conf"), resolv, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.dir, "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	for i := range p.pod.Spec.Containers {
		spec := p.pod.Spec.Containers[i]
		argv, err := p.a.cfg.Images.Argv(&spec)
		if err != nil {
			return err
		}
		c := &container{spec: spec, argv: argv, mounts: mounts[spec.Name]}
		if c.log, err = os.Create(filepath.Join(p.dir, spec.Name+".log")); err != nil {
			return err
		}
		p.mu.Lock()
		p.containers = append(p.containers, c)
		p.mu.Unlock()
		p.launch(ctx, c)
		go p.probe(ctx, c)
	}
	return nil
}

// execState computes the container's environment as the kubelet does at
// every start (service links as they are now) and saves how to enter it.
func (p *podRuntime) execState(ctx context.Context, c *container) (execState, error) {
	services, err := p.a.cs.CoreV1().Services(p.pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return execState{}, fmt.Errorf("failed to list services for the environment: %w", err)
	}
	svcs := services.Items
	if p.pod.Namespace != metav1.NamespaceDefault {
		if k, err := p.a.cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
			svcs = append(svcs, *k)
		}
	}
	env, err := ContainerEnv(p.pod, &c.spec, svcs, p.ip, p.a.cfg.NodeName)
	if err != nil {
		return execState{}, err
	}
	env = append(env, "HOSTNAME="+p.pod.Name, "PATH=/usr/local/bin:/usr/bin:/bin")
	state := execState{Netns: p.netns, Dir: p.dir, Mounts: c.mounts, User: runAsUser(p.pod, &c.spec), Env: env}
	return state, state.save(filepath.Join(p.dir, "exec-"+c.spec.Name+".json"))
}

// launch runs the container's process and restarts it when it exits, with a
// growing back-off, until the pod terminates.
func (p *podRuntime) launch(ctx context.Context, c *container) {
	start := func() error {
		state, err := p.execState(ctx, c)
		if err != nil {
			return err
		}
		cmd := state.command(c.argv)
		cmd.Stdout, cmd.Stderr = c.log, c.log
		if err := cmd.Start(); err != nil {
			return err
		}
		p.mu.Lock()
		c.cmd, c.running, c.started, c.exited = cmd, true, metav1.Now(), make(chan struct{})
		c.ready = c.spec.ReadinessProbe == nil
		exited := c.exited
		p.mu.Unlock()
		go func() {
			err := cmd.Wait()
			p.mu.Lock()
			c.running, c.ready = false, false
			close(exited)
			terminating := p.terminating
			p.mu.Unlock()
			if !terminating {
				p.logf("container exited; restarting", "container", c.spec.Name, "err", fmt.Sprint(err))
			}
		}()
		return nil
	}
	go func() {
		backoff := time.Second
		for {
			p.mu.Lock()
			terminating := p.terminating
			p.mu.Unlock()
			if terminating || ctx.Err() != nil {
				return // never start a process once the pod is stopping
			}
			if err := start(); err != nil {
				p.logf("container failed to start", "container", c.spec.Name, "err", err)
			} else {
				p.writeStatus(ctx, "")
				<-c.exited
			}
			p.mu.Lock()
			done := p.terminating
			if !done {
				c.restarts++
			}
			p.mu.Unlock()
			if done || ctx.Err() != nil {
				return
			}
			p.writeStatus(ctx, "")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}()
}

// probe runs the container's HTTP readiness and liveness probes from the
// node's network namespace, as the kubelet does.
func (p *podRuntime) probe(ctx context.Context, c *container) {
	type state struct {
		probe     *corev1.Probe
		successes int32
		failures  int32
		next      time.Time
	}
	now := time.Now()
	var probes []*state
	for _, pr := range []*corev1.Probe{c.spec.ReadinessProbe, c.spec.LivenessProbe} {
		if pr != nil {
			probes = append(probes, &state{probe: pr, next: now.Add(time.Duration(pr.InitialDelaySeconds) * time.Second)})
		}
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.stopped:
			return
		case now = <-t.C:
		}
		for i, s := range probes {
			if now.Before(s.next) {
				continue
			}
			s.next = now.Add(time.Duration(max(s.probe.PeriodSeconds, 1)) * time.Second)
			ok := p.httpProbe(ctx, c, s.probe)
			if ok {
				s.successes, s.failures = s.successes+1, 0
			} else {
				s.successes, s.failures = 0, s.failures+1
			}
			readiness := i == 0 && c.spec.ReadinessProbe != nil
			p.mu.Lock()
			running, wasReady := c.running, c.ready
			p.mu.Unlock()
			switch {
			case readiness && running:
				ready := wasReady
				if ok && s.successes >= max(s.probe.SuccessThreshold, 1) {
					ready = true
				}
				if !ok && s.failures >= max(s.probe.FailureThreshold, 1) {
					ready = false
				}
				if ready != wasReady {
					p.mu.Lock()
					c.ready = ready
					p.mu.Unlock()
					p.logf("readiness changed", "container", c.spec.Name, "ready", ready)
					p.writeStatus(ctx, "")
				}
			case !readiness && running && !ok && s.failures >= max(s.probe.FailureThreshold, 1):
				p.mu.Lock()
				terminating := p.terminating
				cmd := c.cmd
				p.mu.Unlock()
				if !terminating && cmd != nil {
					p.logf("liveness failed; killing the container", "container", c.spec.Name)
					_ = cmd.Process.Signal(syscall.SIGKILL)
					s.failures = 0
				}
			}
		}
	}
}

func (p *podRuntime) httpProbe(ctx context.Context, c *container, pr *corev1.Probe) bool {
	if pr.HTTPGet == nil {
		return false
	}
	port, ok := probePort(&c.spec, pr.HTTPGet.Port)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(pr.TimeoutSeconds, 1))*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d%s", p.ip, port, pr.HTTPGet.Path), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func probePort(c *corev1.Container, port intstr.IntOrString) (int, bool) {
	if port.Type == intstr.Int {
		return port.IntValue(), true
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), true
		}
	}
	n, err := strconv.Atoi(port.StrVal)
	return n, err == nil
}

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
	// Readiness comes from the probes alone, also while terminating, as the
	// kubelet's: a pod drains only if its own readiness says so.
	allReady := len(p.containers) == len(p.pod.Spec.Containers)
	var statuses []corev1.ContainerStatus
	for _, c := range p.containers {
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: "lab://" + c.argv[0], ContainerID: "lab://" + p.netns + "/" + c.spec.Name,
			Ready: c.ready, RestartCount: c.restarts, Started: &c.running,
		}
		if c.running {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.started}
		} else {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
		}
		statuses = append(statuses, cs)
		allReady = allReady && c.ready
	}
	p.mu.Unlock()
	status := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    p.a.cfg.NodeIP,
		HostIPs:   []corev1.HostIP{{IP: p.a.cfg.NodeIP}},
		StartTime: &p.startedAt,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true),
			cond(corev1.ContainersReady, allReady), cond(corev1.PodReady, allReady),
		},
		ContainerStatuses: statuses,
	}
	if p.ip != "" {
		status.PodIP, status.PodIPs = p.ip, []corev1.PodIP{{IP: p.ip}}
	}
	if failure != "" {
		status.Phase, status.Reason, status.Message = corev1.PodPending, "LabSetupFailed", failure
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err == nil {
		_, err = p.a.cs.CoreV1().Pods(p.pod.Namespace).Patch(ctx, p.pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	}
	if err != nil && ctx.Err() == nil {
		p.logf("failed to write pod status", "err", err)
	}
}

// terminate stops the pod as the kubelet does: SIGTERM, the grace period,
// SIGKILL; then the network goes and the pod object is deleted.
func (p *podRuntime) terminate(ctx context.Context, pod *corev1.Pod) {
	p.mu.Lock()
	if p.terminating {
		p.mu.Unlock()
		return
	}
	p.terminating = true
	p.mu.Unlock()
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	go func() {
		p.logf("terminating", "grace", grace)
		p.writeStatus(ctx, "")
		p.stop(grace)
		p.a.deletePod(ctx, pod)
		p.a.forget(pod.UID)
	}()
}

// stop signals every process, waits up to grace, kills what is left and
// removes the pod's network.
func (p *podRuntime) stop(grace time.Duration) {
	p.mu.Lock()
	p.terminating = true
	var exits []chan struct{}
	for _, c := range p.containers {
		if c.running && c.cmd != nil {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			exits = append(exits, c.exited)
		}
	}
	p.mu.Unlock()
	deadline := time.After(grace)
	for _, e := range exits {
		select {
		case <-e:
		case <-deadline:
		}
	}
	p.mu.Lock()
	for _, c := range p.containers {
		if c.running && c.cmd != nil {
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	cancel := p.cancel
	p.mu.Unlock()
	for _, e := range exits {
		<-e
	}
	select {
	case <-p.stopped:
	default:
		close(p.stopped)
	}
	if cancel != nil {
		cancel()
	}
	if p.ip != "" {
		if err := p.a.cfg.CNI.Del(p.pod, p.netns); err != nil {
			p.logf("CNI DEL failed", "err", err)
		}
	}
	_ = run("ip", "netns", "del", p.netns)
	p.logf("stopped")
}

func runAsUser(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsUser
	}
	return nil
}
