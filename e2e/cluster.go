//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is what the suite needs from a provider.
type Cluster interface {
	// RESTConfig reaches the API server as an administrator.
	RESTConfig() (*rest.Config, error)
	// Kubeconfig is the file RESTConfig reads.
	Kubeconfig() string
	// HubbleServer is a Hubble observer address (Relay, or an agent socket).
	HubbleServer() string
	// Exec runs cmd in the pod's first container and returns its stdout.
	Exec(ctx context.Context, namespace, pod string, cmd ...string) (string, error)
	// NodeExec runs cmd as root on the node (its host namespaces), where a
	// kubelet and crictl see the pods' processes; ErrNoNodeExec where the
	// provider cannot.
	NodeExec(ctx context.Context, node string, cmd ...string) (string, error)
	// AgentExec runs a command (cilium-dbg ...) where the node's Cilium
	// agent runs, and returns its stdout.
	AgentExec(ctx context.Context, node string, cmd ...string) (string, error)
	// AgentLog is what the node's Cilium agent logged since then.
	AgentLog(ctx context.Context, node string, since time.Time) (string, error)
	// Image is the image reference of our lrpdns image in this cluster.
	Image() string
	// Kubectl runs kubectl against the cluster and returns its stdout.
	Kubectl(ctx context.Context, args ...string) (string, error)
	// Kustomization is the directory that was applied to install lrpdns
	// (kubectl apply -k), or with Helm the kustomization that renders the
	// same objects (the migration guide's steps use it).
	Kustomization() string
	// Install installs lrpdns again as it was installed (kubectl apply -k
	// or -f, or helm upgrade --install); Uninstall removes it that way and
	// waits.
	// UninstallCommand names the command, for reports.
	Install(ctx context.Context) (string, error)
	Uninstall(ctx context.Context) (string, error)
	UninstallCommand() string
}

// fromEnv builds the provider hack/e2e.sh describes in the environment:
//
//	LRPDNS_E2E_KUBECONFIG  kubeconfig file
//	LRPDNS_E2E_HUBBLE      Hubble address
//	LRPDNS_E2E_KUBECTL     kubectl binary (exec in pods)
//	LRPDNS_E2E_IMAGE       the lrpdns image
//	LRPDNS_E2E_KUSTOMIZATION  the directory applied with kubectl apply -k
//	LRPDNS_E2E_KUBE_DNS_SERVICE  kube-dns's Service name, if not kube-dns
//	LRPDNS_E2E_HELM_CHART  the chart installed as release lrpdns in kube-system
//	                       instead of the kustomization, with
//	LRPDNS_E2E_HELM        the helm binary and
//	LRPDNS_E2E_HELM_VALUES its values file, if any
//	LRPDNS_E2E_MANIFEST    manifests/install.yaml, applied with kubectl
//	                       apply -f instead of the kustomization
//	LRPDNS_E2E_NODE_EXEC   "docker": nodes are containers of the Docker
//	                       engine DOCKER_HOST names, named as the Nodes (kind)
//
// Cilium's agents are the pods of DaemonSet kube-system/cilium, entered
// with kubectl exec.
//
// or, for the lab (hack/e2e-lab.sh), LRPDNS_E2E_PROVIDER=lab, the same, and
//
//	LRPDNS_E2E_EXEC        command prefix that runs a command in a pod
//	LRPDNS_E2E_AGENTS      NODE=PID,... every node's cilium-agent process
//	LRPDNS_E2E_CILIUM_LOGS NODE=FILE,... every node's agent log
//	LRPDNS_E2E_CILIUM_DBG  the cilium-dbg binary
func fromEnv() (Cluster, error) {
	k := kubectlCluster{
		kubeconfig:    os.Getenv("LRPDNS_E2E_KUBECONFIG"),
		hubble:        os.Getenv("LRPDNS_E2E_HUBBLE"),
		kubectl:       os.Getenv("LRPDNS_E2E_KUBECTL"),
		image:         os.Getenv("LRPDNS_E2E_IMAGE"),
		kustomization: os.Getenv("LRPDNS_E2E_KUSTOMIZATION"),
		helm:          os.Getenv("LRPDNS_E2E_HELM"),
		chart:         os.Getenv("LRPDNS_E2E_HELM_CHART"),
		values:        os.Getenv("LRPDNS_E2E_HELM_VALUES"),
		manifest:      os.Getenv("LRPDNS_E2E_MANIFEST"),
		nodeExec:      os.Getenv("LRPDNS_E2E_NODE_EXEC"),
	}
	if k.nodeExec != "" && k.nodeExec != "docker" {
		return nil, fmt.Errorf("LRPDNS_E2E_NODE_EXEC=%q: want docker or nothing", k.nodeExec)
	}
	if k.chart != "" && k.manifest != "" {
		return nil, fmt.Errorf("set LRPDNS_E2E_HELM_CHART or LRPDNS_E2E_MANIFEST, not both")
	}
	if k.chart != "" && k.helm == "" {
		return nil, fmt.Errorf("LRPDNS_E2E_HELM_CHART is set: set LRPDNS_E2E_HELM too")
	}
	if k.kubeconfig == "" || k.hubble == "" || k.kubectl == "" || k.image == "" || k.kustomization == "" {
		return nil, fmt.Errorf("set LRPDNS_E2E_KUBECONFIG, LRPDNS_E2E_HUBBLE, LRPDNS_E2E_KUBECTL, LRPDNS_E2E_IMAGE and LRPDNS_E2E_KUSTOMIZATION (make e2e and make e2e-lab do)")
	}
	if os.Getenv("LRPDNS_E2E_PROVIDER") == "lab" {
		c := &labCluster{kubectlCluster: k, exec: strings.Fields(os.Getenv("LRPDNS_E2E_EXEC")),
			agents: pairs(os.Getenv("LRPDNS_E2E_AGENTS")), logs: pairs(os.Getenv("LRPDNS_E2E_CILIUM_LOGS")), dbg: os.Getenv("LRPDNS_E2E_CILIUM_DBG")}
		if len(c.exec) == 0 || len(c.agents) == 0 || len(c.logs) == 0 || c.dbg == "" {
			return nil, fmt.Errorf("set LRPDNS_E2E_EXEC, LRPDNS_E2E_AGENTS, LRPDNS_E2E_CILIUM_LOGS and LRPDNS_E2E_CILIUM_DBG (make e2e-lab does)")
		}
		return c, nil
	}
	return &k, nil
}

// kubectlCluster is any cluster reached with a kubeconfig and kubectl exec:
// kind, or a real one.
type kubectlCluster struct {
	kubeconfig, hubble, kubectl, image, kustomization string
	// helm, chart and values: installed with Helm when chart is set.
	helm, chart, values string
	// manifest: installed with kubectl apply -f manifest when set.
	manifest string
	// nodeExec: how to run a command on a node ("docker": docker exec).
	nodeExec string
}

// ErrNoNodeExec is the error of a provider that cannot run commands on its nodes.
var ErrNoNodeExec = errors.New("this provider cannot run commands on its nodes")

func (c *kubectlCluster) NodeExec(ctx context.Context, node string, cmd ...string) (string, error) {
	if c.nodeExec != "docker" {
		return "", ErrNoNodeExec
	}
	return capture(ctx, "docker", append([]string{"exec", node}, cmd...), "node", node)
}

// The Helm release the lab installs.
const helmRelease, helmNamespace = "lrpdns", "kube-system"

func (c *kubectlCluster) Install(ctx context.Context) (string, error) {
	if c.manifest != "" {
		return c.Kubectl(ctx, "apply", "-f", c.manifest)
	}
	if c.chart == "" {
		return c.Kubectl(ctx, "apply", "-k", c.kustomization)
	}
	args := []string{"--kubeconfig", c.kubeconfig, "upgrade", "--install", helmRelease, c.chart, "--namespace", helmNamespace}
	if c.values != "" {
		args = append(args, "--values", c.values)
	}
	return capture(ctx, c.helm, args, "", "helm")
}

func (c *kubectlCluster) Uninstall(ctx context.Context) (string, error) {
	if c.manifest != "" {
		return c.Kubectl(ctx, "delete", "-f", c.manifest, "--wait=true")
	}
	if c.chart == "" {
		return c.Kubectl(ctx, "delete", "-k", c.kustomization, "--wait=true")
	}
	return capture(ctx, c.helm, []string{"--kubeconfig", c.kubeconfig, "uninstall", helmRelease, "--namespace", helmNamespace, "--wait"}, "", "helm")
}

func (c *kubectlCluster) UninstallCommand() string {
	if c.manifest != "" {
		return "kubectl delete -f"
	}
	if c.chart == "" {
		return "kubectl delete -k"
	}
	return "helm uninstall"
}

func (c *kubectlCluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return capture(ctx, c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...), "", "kubectl")
}

func (c *kubectlCluster) Kustomization() string { return c.kustomization }

func (c *kubectlCluster) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", c.kubeconfig)
}

func (c *kubectlCluster) Kubeconfig() string { return c.kubeconfig }

func (c *kubectlCluster) HubbleServer() string { return c.hubble }

func (c *kubectlCluster) Image() string { return c.image }

func (c *kubectlCluster) Exec(ctx context.Context, namespace, pod string, cmd ...string) (string, error) {
	args := append([]string{"--kubeconfig", c.kubeconfig, "-n", namespace, "exec", pod, "--"}, cmd...)
	return capture(ctx, c.kubectl, args, namespace, pod)
}

// capture runs name with args and returns its stdout; the error carries
// stderr and names the pod.
func capture(ctx context.Context, name string, args []string, namespace, pod string) (string, error) {
	var stdout, stderr bytes.Buffer
	x := exec.CommandContext(ctx, name, args...)
	x.Stdout, x.Stderr = &stdout, &stderr
	if err := x.Run(); err != nil {
		return stdout.String(), fmt.Errorf("exec in %s/%s %v: %w: %s", namespace, pod, args, err, stderr.String())
	}
	return stdout.String(), nil
}

// pairs reads K=V,K=V.
func pairs(s string) map[string]string {
	m := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// agentPod is the Cilium agent pod on node.
func (c *kubectlCluster) agentPod(ctx context.Context, node string) (string, error) {
	out, err := c.Kubectl(ctx, "-n", "kube-system", "get", "pods", "-l", "k8s-app=cilium",
		"--field-selector", "spec.nodeName="+node, "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil || out == "" {
		return "", fmt.Errorf("no Cilium agent pod on %s: %w", node, err)
	}
	return out, nil
}

func (c *kubectlCluster) AgentExec(ctx context.Context, node string, cmd ...string) (string, error) {
	pod, err := c.agentPod(ctx, node)
	if err != nil {
		return "", err
	}
	return c.Kubectl(ctx, append([]string{"-n", "kube-system", "exec", pod, "-c", "cilium-agent", "--"}, cmd...)...)
}

func (c *kubectlCluster) AgentLog(ctx context.Context, node string, since time.Time) (string, error) {
	pod, err := c.agentPod(ctx, node)
	if err != nil {
		return "", err
	}
	return c.Kubectl(ctx, "-n", "kube-system", "logs", pod, "-c", "cilium-agent", "--since-time="+since.UTC().Format(time.RFC3339))
}

// labCluster is the lab: pods are processes, entered with lab-node exec;
// each node's agent is a process, entered with nsenter into its mount
// namespace, and logs to a file.
type labCluster struct {
	kubectlCluster
	exec []string
	// agents: node -> the agent's PID; logs: node -> its log file.
	agents, logs map[string]string
	// dbg is the cilium-dbg binary.
	dbg string
}

func (c *labCluster) AgentExec(ctx context.Context, node string, cmd ...string) (string, error) {
	pid, ok := c.agents[node]
	if !ok {
		return "", fmt.Errorf("no Cilium agent on %s", node)
	}
	if len(cmd) > 0 && cmd[0] == "cilium-dbg" {
		cmd = append([]string{c.dbg}, cmd[1:]...)
	}
	return capture(ctx, "nsenter", append([]string{"-t", pid, "-m", "--"}, cmd...), "agent", node)
}

func (c *labCluster) AgentLog(_ context.Context, node string, _ time.Time) (string, error) {
	f, ok := c.logs[node]
	if !ok {
		return "", fmt.Errorf("no Cilium agent log for %s", node)
	}
	b, err := os.ReadFile(f) //nolint:gosec // the lab's own log file
	return string(b), err
}

// NodeExec: the lab's nodes are network namespaces whose pods are
// processes of lab-node, which enforces no security context or limit.
func (c *labCluster) NodeExec(context.Context, string, ...string) (string, error) {
	return "", ErrNoNodeExec
}

func (c *labCluster) Exec(ctx context.Context, namespace, pod string, cmd ...string) (string, error) {
	args := append(append(slices.Clone(c.exec[1:]), "--namespace", namespace, "--pod", pod, "--"), cmd...)
	return capture(ctx, c.exec[0], args, namespace, pod)
}
