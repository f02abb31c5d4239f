package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (p *podRuntime) setup(ctx context.Context) error {
	p.startedAt = metav1.Now()
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	ips, err := p.network()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ip, p.ips = ips[0], ips
	p.mu.Unlock()
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

// network gives the pod its network namespace and addresses: its own,
// connected by cilium-cni, or the node's for a hostNetwork pod.
func (p *podRuntime) network() ([]string, error) {
	if p.pod.Spec.HostNetwork {
		if p.netns == "" {
			return nil, fmt.Errorf("hostNetwork pod: lab-node runs without --node-netns")
		}
		return []string{p.a.cfg.NodeIP}, nil
	}
	if err := run("ip", "netns", "add", p.netns); err != nil {
		return nil, err
	}
	if err := run("ip", "-n", p.netns, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return p.a.cfg.CNI.Add(p.pod, p.netns)
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
