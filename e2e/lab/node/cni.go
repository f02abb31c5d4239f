package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// CNI runs cilium-cni for a pod, inside the Cilium agent's mount and network
// namespaces (where /var/run/cilium is the agent's), as a container runtime
// would.
type CNI struct {
	// Plugin is the cilium-cni binary.
	Plugin string
	// Conf is the network configuration passed on stdin.
	Conf []byte
	// AgentPID finds the Cilium agent's process.
	AgentPID func() (int, error)
}

func (c CNI) invoke(command string, pod *corev1.Pod, netns string) ([]byte, error) {
	pid, err := c.AgentPID()
	if err != nil {
		return nil, fmt.Errorf("failed to find the Cilium agent: %w", err)
	}
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-m", "-n", c.Plugin)
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+string(pod.UID),
		"CNI_NETNS=/run/netns/"+netns,
		"CNI_IFNAME=eth0",
		"CNI_PATH="+filepath.Dir(c.Plugin),
		fmt.Sprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s", pod.Namespace, pod.Name, pod.UID),
	)
	cmd.Stdin = bytes.NewReader(c.Conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cilium-cni %s for %s/%s: %w: %s %s", command, pod.Namespace, pod.Name, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// Add connects the pod's network namespace and returns its addresses, IPv4
// first: the lab's primary family, which a kubelet puts first in podIPs
// (cilium-cni gives IPv6 first).
func (c CNI) Add(pod *corev1.Pod, netns string) ([]string, error) {
	out, err := c.invoke("ADD", pod, netns)
	if err != nil {
		return nil, err
	}
	return cniAddresses(out)
}

// cniAddresses reads the addresses of a CNI ADD result.
func cniAddresses(out []byte) ([]string, error) {
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return nil, fmt.Errorf("cilium-cni ADD returned no address: %s", out)
	}
	ips := make([]string, 0, len(res.IPs))
	for _, a := range res.IPs {
		p, err := netip.ParsePrefix(a.Address)
		if err != nil {
			return nil, fmt.Errorf("cilium-cni ADD returned address %q: %w", a.Address, err)
		}
		ips = append(ips, p.Addr().String())
	}
	family := func(ip string) int { return strings.Count(ip, ":") } // 0 for IPv4
	slices.SortStableFunc(ips, func(a, b string) int { return min(family(a), 1) - min(family(b), 1) })
	return ips, nil
}

// Del disconnects the pod.
func (c CNI) Del(pod *corev1.Pod, netns string) error {
	_, err := c.invoke("DEL", pod, netns)
	return err
}
