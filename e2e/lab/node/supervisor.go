package node

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
	state := execState{Netns: p.netns, Dir: p.dir, Mounts: c.mounts, User: runAsUser(p.pod, &c.spec), Env: env, Cgroup: p.a.cfg.Cgroup}
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
		c.ready = c.spec.ReadinessProbe == nil || (c.spec.ReadinessProbe.HTTPGet == nil && c.spec.ReadinessProbe.TCPSocket == nil) // only HTTP and TCP probes are run
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
	p.stopOnce.Do(func() { close(p.stopped) })
	if cancel != nil {
		cancel()
	}
	if !p.pod.Spec.HostNetwork {
		if p.ip != "" {
			if err := p.a.cfg.CNI.Del(p.pod, p.netns); err != nil {
				p.logf("CNI DEL failed", "err", err)
			}
		}
		_ = run("ip", "netns", "del", p.netns)
	}
	p.logf("stopped")
}
