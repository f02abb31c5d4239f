package node

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var images = Images{
	"ghcr.io/lrpdns/node-cache":       {Entrypoint: "/node-cache", Binary: "/lab/bin/node-cache"},
	"ghcr.io/lrpdns/lrpdns":           {Entrypoint: "/lrpdns", Binary: "/lab/bin/lrpdns"},
	"registry.k8s.io/coredns/coredns": {Entrypoint: "/coredns", Binary: "/lab/bin/coredns"},
}

func TestArgv(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		c    corev1.Container
		want string
	}{
		{corev1.Container{Image: "ghcr.io/lrpdns/node-cache:v0.1.0", Args: []string{"--port=5353"}}, "/lab/bin/node-cache --port=5353"},
		{corev1.Container{Image: "ghcr.io/lrpdns/lrpdns@sha256:abc", Args: []string{"controller"}}, "/lab/bin/lrpdns controller"},
		{corev1.Container{Image: "registry.k8s.io/coredns/coredns:v1.14.7", Command: []string{"/coredns"}, Args: []string{"-conf", "/etc/coredns/Corefile"}}, "/lab/bin/coredns -conf /etc/coredns/Corefile"},
	} {
		got, err := images.Argv(&tt.c)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("Argv(%s) = %q, %v; want %q", tt.c.Image, got, err, tt.want)
		}
	}
	if _, err := images.Argv(&corev1.Container{Image: "docker.io/library/busybox:1"}); err == nil || !strings.Contains(err.Error(), "busybox") {
		t.Errorf("unknown image: %v, want an error naming it", err)
	}
}

func TestContainerEnv(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nld-x", Namespace: "kube-system", UID: "0b5c7f1e-uid"}}
	c := &corev1.Container{
		Env: []corev1.EnvVar{
			{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "KUBE_DNS_UPSTREAM_SERVICE_HOST", Value: "overridden"},
		},
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}},
	}
	svcs := []corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-upstream"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.21.149", Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
		}},
	}, {ObjectMeta: metav1.ObjectMeta{Name: "headless"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 1}}}}}
	env, err := ContainerEnv(pod, c, svcs, "10.244.0.9", "lab")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"GOMEMLIMIT=134217728", "POD=nld-x", "POD_UID=0b5c7f1e-uid", "KUBE_DNS_UPSTREAM_SERVICE_HOST=overridden",
		"KUBE_DNS_UPSTREAM_SERVICE_PORT=53", "KUBE_DNS_UPSTREAM_SERVICE_PORT_DNS_TCP=53",
		"KUBE_DNS_UPSTREAM_PORT=udp://10.96.21.149:53", "KUBE_DNS_UPSTREAM_PORT_53_TCP_ADDR=10.96.21.149",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %v", want, env)
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, "HEADLESS_") {
			t.Errorf("headless Service got env %s", e)
		}
	}
}

func TestResolvConf(t *testing.T) {
	t.Parallel()
	node := []byte("nameserver 10.99.0.1\n")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default"}}
	got, err := ResolvConf(pod, node, "10.96.0.10", "cluster.local")
	if err != nil || !strings.Contains(string(got), "nameserver 10.96.0.10") || !strings.Contains(string(got), "search default.svc.cluster.local") {
		t.Errorf("ClusterFirst: %q, %v", got, err)
	}
	pod.Spec.DNSPolicy = corev1.DNSDefault
	if got, _ := ResolvConf(pod, node, "10.96.0.10", "cluster.local"); string(got) != string(node) {
		t.Errorf("Default: %q, want the node's", got)
	}
}

func TestScriptRunsTheBinaryFromOutsideTmp(t *testing.T) {
	t.Parallel()
	s := execState{Netns: "lab-x", Dir: "/tmp/lab/pods/p", Mounts: []mount{{Source: "/tmp/lab/pods/p/vol/cfg", Target: "/etc/kube-dns", ReadOnly: true}}}
	script, err := s.script()
	if err != nil {
		t.Fatal(err)
	}
	tmp := strings.Index(script, "lab-tmp /tmp")
	for _, before := range []string{"mount --bind '/tmp/lab/pods/p/vol/cfg' '/etc/kube-dns'", `mount --bind "$1" /run/lab-entrypoint`, "/etc/resolv.conf"} {
		if i := strings.Index(script, before); i < 0 || i > tmp {
			t.Errorf("%q must come before /tmp is covered:\n%s", before, script)
		}
	}
	if !strings.HasSuffix(script, "exec /run/lab-entrypoint \"$@\"\n") {
		t.Errorf("script does not exec the bound entrypoint:\n%s", script)
	}
	s.Mounts = []mount{{Source: "/x", Target: "/opt/data"}}
	if _, err := s.script(); err == nil || !strings.Contains(err.Error(), "/opt/data") {
		t.Errorf("mount outside the supported roots: %v, want an error naming it", err)
	}
}

// TestExecFindsThePodOnAnyNode: lab-node exec takes every node's directory
// and enters the pod on whichever node runs it; a pod on none is an error
// naming the directories searched.
func TestExecFindsThePodOnAnyNode(t *testing.T) {
	t.Parallel()
	dirs := []string{filepath.Join(t.TempDir(), "node1"), filepath.Join(t.TempDir(), "node2")}
	for i, dir := range dirs {
		pod := filepath.Join(dir, "pods", "default_client_"+strconv.Itoa(i))
		if err := os.MkdirAll(pod, 0o755); err != nil {
			t.Fatal(err)
		}
		s := execState{Netns: "lab-node" + strconv.Itoa(i+1), Dir: pod}
		if err := s.save(filepath.Join(pod, "exec-probe.json")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(dirs[1], "pods", "default_client_1"), filepath.Join(dirs[1], "pods", "default_other_1")); err != nil {
		t.Fatal(err)
	}
	for name, netns := range map[string]string{"client": "lab-node1", "other": "lab-node2"} {
		cmd, err := Exec(dirs, Images{}, "default", name, []string{"/bin/true"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := strings.Join(cmd.Args, " "); !strings.Contains(got, "netns exec "+netns+" ") {
			t.Errorf("pod %s: %q, want it run in %s", name, got, netns)
		}
	}
	_, err := Exec(dirs, Images{}, "default", "absent", []string{"/bin/true"})
	if err == nil || !strings.Contains(err.Error(), dirs[0]) || !strings.Contains(err.Error(), dirs[1]) {
		t.Errorf("absent pod: %v, want an error naming both directories", err)
	}
}
