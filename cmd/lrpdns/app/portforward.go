package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// forwardToService port-forwards a local port on 127.0.0.1 to a ready pod
// behind the Service's first port, as `kubectl port-forward svc/NAME` does,
// and returns the local address and a function that stops it.
func forwardToService(ctx context.Context, cfg *rest.Config, namespace, name string, log io.Writer) (string, func(), error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("failed to create a client: %w", err)
	}
	svc, err := cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("failed to read Service %s/%s: %w", namespace, name, err)
	}
	if len(svc.Spec.Ports) == 0 || len(svc.Spec.Selector) == 0 {
		return "", nil, fmt.Errorf("service %s/%s has no port or no selector", namespace, name)
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return "", nil, fmt.Errorf("failed to list the pods of Service %s/%s: %w", namespace, name, err)
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		if ready(&pods.Items[i]) {
			pod = &pods.Items[i]
			break
		}
	}
	if pod == nil {
		return "", nil, fmt.Errorf("service %s/%s has no ready pod", namespace, name)
	}
	port, err := targetPort(svc.Spec.Ports[0], pod)
	if err != nil {
		return "", nil, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("failed to set up the port-forward: %w", err)
	}
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	stop, readyCh := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, readyCh, io.Discard, log)
	if err != nil {
		return "", nil, fmt.Errorf("failed to set up the port-forward: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-readyCh:
	case err := <-errc:
		return "", nil, fmt.Errorf("failed to port-forward to pod %s/%s port %d: %w", pod.Namespace, pod.Name, port, err)
	case <-ctx.Done():
		close(stop)
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		close(stop)
		return "", nil, fmt.Errorf("failed to read the forwarded port: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(int(ports[0].Local))
	fmt.Fprintf(log, "verify: reading flows through a port-forward to pod %s/%s port %d (Service %s/%s) at %s\n", pod.Namespace, pod.Name, port, namespace, name, addr)
	return addr, func() { close(stop) }, nil
}

func ready(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// targetPort resolves a Service port's target port on a pod, by number or
// by the container port's name.
func targetPort(sp corev1.ServicePort, pod *corev1.Pod) (int, error) {
	if sp.TargetPort.IntValue() != 0 {
		return sp.TargetPort.IntValue(), nil
	}
	name := sp.TargetPort.String()
	if name == "" || name == "0" {
		return int(sp.Port), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return int(p.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("pod %s/%s has no container port named %q", pod.Namespace, pod.Name, name)
}
