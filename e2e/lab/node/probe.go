package node

import (
	"cmp"
	"context"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe runs the container's HTTP readiness and liveness probes from the
// node's network namespace, as the kubelet does.
func (p *podRuntime) probe(ctx context.Context, c *container) {
	type state struct {
		probe     *corev1.Probe
		readiness bool
		successes int32
		failures  int32
		next      time.Time
	}
	now := time.Now()
	var probes []*state
	for _, pr := range []struct {
		probe     *corev1.Probe
		readiness bool
	}{{c.spec.ReadinessProbe, true}, {c.spec.LivenessProbe, false}} {
		switch {
		case pr.probe == nil:
		case pr.probe.HTTPGet == nil && pr.probe.TCPSocket == nil:
			// Only HTTP and TCP probes are run; another kind never fails, rather
			// than killing the container or withholding readiness.
			p.logf("probe kind not supported; treating it as passing", "container", c.spec.Name, "readiness", pr.readiness)
		default:
			probes = append(probes, &state{probe: pr.probe, readiness: pr.readiness, next: now.Add(time.Duration(pr.probe.InitialDelaySeconds) * time.Second)})
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
		for _, s := range probes {
			if now.Before(s.next) {
				continue
			}
			s.next = now.Add(time.Duration(max(s.probe.PeriodSeconds, 1)) * time.Second)
			ok := p.check(ctx, c, s.probe)
			if ok {
				s.successes, s.failures = s.successes+1, 0
			} else {
				s.successes, s.failures = 0, s.failures+1
			}
			readiness := s.readiness
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

// check runs an HTTP probe (2xx or 3xx passes) or a TCP one (a connection
// passes).
func (p *podRuntime) check(ctx context.Context, c *container, pr *corev1.Probe) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(pr.TimeoutSeconds, 1))*time.Second)
	defer cancel()
	if pr.TCPSocket != nil {
		port, ok := probePort(&c.spec, pr.TCPSocket.Port)
		if !ok {
			return false
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(cmp.Or(pr.TCPSocket.Host, p.ip), strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	if pr.HTTPGet == nil {
		return false
	}
	port, ok := probePort(&c.spec, pr.HTTPGet.Port)
	if !ok {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(cmp.Or(pr.HTTPGet.Host, p.ip), strconv.Itoa(port))+pr.HTTPGet.Path, nil)
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
