//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

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
	// Image is the image reference of our lrpdns image in this cluster.
	Image() string
	// Kubectl runs kubectl against the cluster and returns its stdout.
	Kubectl(ctx context.Context, args ...string) (string, error)
	// Kustomization is the directory that was applied to install lrpdns.
	Kustomization() string
}

// fromEnv builds the provider hack/e2e.sh describes in the environment:
//
//	LRPDNS_E2E_KUBECONFIG  kubeconfig file
//	LRPDNS_E2E_HUBBLE      Hubble address
//	LRPDNS_E2E_KUBECTL     kubectl binary (exec in pods)
//	LRPDNS_E2E_IMAGE       the lrpdns image
//	LRPDNS_E2E_KUSTOMIZATION  the directory applied with kubectl apply -k
//	LRPDNS_E2E_KUBE_DNS_SERVICE  kube-dns's Service name, if not kube-dns
//
// or, for the lab (hack/e2e-lab.sh), LRPDNS_E2E_PROVIDER=lab, the same, and
//
//	LRPDNS_E2E_EXEC        command prefix that runs a command in a pod
func fromEnv() (Cluster, error) {
	k := kubectlCluster{
		kubeconfig:    os.Getenv("LRPDNS_E2E_KUBECONFIG"),
		hubble:        os.Getenv("LRPDNS_E2E_HUBBLE"),
		kubectl:       os.Getenv("LRPDNS_E2E_KUBECTL"),
		image:         os.Getenv("LRPDNS_E2E_IMAGE"),
		kustomization: os.Getenv("LRPDNS_E2E_KUSTOMIZATION"),
	}
	if k.kubeconfig == "" || k.hubble == "" || k.kubectl == "" || k.image == "" || k.kustomization == "" {
		return nil, fmt.Errorf("set LRPDNS_E2E_KUBECONFIG, LRPDNS_E2E_HUBBLE, LRPDNS_E2E_KUBECTL, LRPDNS_E2E_IMAGE and LRPDNS_E2E_KUSTOMIZATION (make e2e and make e2e-lab do)")
	}
	if os.Getenv("LRPDNS_E2E_PROVIDER") == "lab" {
		c := &labCluster{kubectlCluster: k, exec: strings.Fields(os.Getenv("LRPDNS_E2E_EXEC"))}
		if len(c.exec) == 0 {
			return nil, fmt.Errorf("set LRPDNS_E2E_EXEC (make e2e-lab does)")
		}
		return c, nil
	}
	return &k, nil
}

// kubectlCluster is any cluster reached with a kubeconfig and kubectl exec:
// kind, or a real one.
type kubectlCluster struct {
	kubeconfig, hubble, kubectl, image, kustomization string
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

// labCluster is the lab: pods are processes, entered with lab-node exec.
type labCluster struct {
	kubectlCluster
	exec []string
}

func (c *labCluster) Exec(ctx context.Context, namespace, pod string, cmd ...string) (string, error) {
	args := append(append(slices.Clone(c.exec[1:]), "--namespace", namespace, "--pod", pod, "--"), cmd...)
	return capture(ctx, c.exec[0], args, namespace, pod)
}
