package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lrpdns/lrpdns/internal/testenv"
	"github.com/lrpdns/lrpdns/pkg/lrp"
)

const fixtures = "../../../pkg/verify/testdata/"

func TestVerifyExitStatus(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := Run(context.Background(), []string{"verify", "--flows", fixtures + "healthy.jsonpb", "--since", "0", "--node-resolvers", "10.99.0.1"}, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "PASS: the node-local DNS path is proven") {
		t.Errorf("healthy: %v\n%s", err, out.String())
	}
	out.Reset()
	err = Run(context.Background(), []string{"verify", "--flows", fixtures + "bypass.jsonpb", "--since", "0", "-o", "json"}, &out, io.Discard)
	if !errors.Is(err, ErrVerifyFailed) || !strings.Contains(out.String(), `"pass": false`) {
		t.Errorf("bypass: %v, want ErrVerifyFailed and a JSON report\n%s", err, out.String())
	}
	// The recording's clients are IPv4: they prove nothing of IPv6 clients.
	out.Reset()
	err = Run(context.Background(), []string{"verify", "--flows", fixtures + "healthy.jsonpb", "--since", "0", "--node-resolvers", "10.99.0.1", "--client-ip-version", "6"}, &out, io.Discard)
	if !errors.Is(err, ErrVerifyFailed) || !strings.Contains(out.String(), "over IPv6") {
		t.Errorf("healthy IPv4 clients, --client-ip-version 6: %v, want ErrVerifyFailed naming IPv6\n%s", err, out.String())
	}
}

func TestVerifyStdin(t *testing.T) {
	f, err := os.Open(fixtures + "healthy.jsonpb")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if err := runVerify(context.Background(), []string{"--flows", "-", "--since", "0"}, f, &out, io.Discard); err != nil {
		t.Errorf("stdin: %v\n%s", err, out.String())
	}
}

// Relay's word that a node went unrecorded fails a record that would pass.
func TestVerifyFailsAnIncompleteRecord(t *testing.T) {
	healthy, err := os.ReadFile(fixtures + "healthy.jsonpb")
	if err != nil {
		t.Fatal(err)
	}
	in := string(healthy) + `{"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["kind-worker2"], "message": "connection refused"}}` + "\n"
	var out bytes.Buffer
	err = runVerify(context.Background(), []string{"--flows", "-", "--since", "0", "--node-resolvers", "10.99.0.1"}, strings.NewReader(in), &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NODE_UNAVAILABLE for kind-worker2: connection refused") || !strings.Contains(out.String(), "PASS") {
		t.Errorf("a node Relay could not reach: %v, want the report and an error quoting Relay\n%s", err, out.String())
	}
}

func TestVerifyFlagErrors(t *testing.T) {
	t.Setenv("KUBECONFIG", "/nonexistent") // no cluster to read from
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for _, args := range [][]string{
		{"verify"},
		{"verify", "--flows", "x", "--hubble-server", "y"},
		{"verify", "--flows", fixtures + "healthy.jsonpb", "--kube-dns-ports", "0"},
		{"verify", "--flows", fixtures + "healthy.jsonpb", "-o", "yaml"},
		{"verify", "--flows", fixtures + "healthy.jsonpb", "--node-resolvers", "not-an-ip"},
		{"verify", "--flows", fixtures + "healthy.jsonpb", "--client-ip-version", "ipv6"},
	} {
		err := Run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || errors.Is(err, ErrVerifyFailed) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestVerifyReadsTheCluster: with --kubeconfig, verify reads the cache's
// selector and port from the policy and CoreDNS's target ports from the
// Service it redirects, on a real kube-apiserver; flags still win.
func TestVerifyReadsTheCluster(t *testing.T) {
	env, cfg := testenv.ForTest(t, true)
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme, _ := lrp.Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// What the recording's cluster had (pkg/verify/testdata/README.md).
	kubeDNS := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"k8s-app": "kube-dns"}, Ports: []corev1.ServicePort{
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
			{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
		}},
	}
	policy := &ciliumv2.CiliumLocalRedirectPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "node-local-dns", Namespace: "kube-system"},
		Spec: ciliumv2.CiliumLocalRedirectPolicySpec{
			RedirectFrontend: ciliumv2.RedirectFrontend{ServiceMatcher: &ciliumv2.ServiceInfo{Name: "kube-dns", Namespace: "kube-system",
				ToPorts: []ciliumv2.PortInfo{{Port: "53", Protocol: "UDP", Name: "dns"}, {Port: "53", Protocol: "TCP", Name: "dns-tcp"}}}},
			RedirectBackend: ciliumv2.RedirectBackend{
				LocalEndpointSelector: slimv1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "node-local-dns"}},
				ToPorts:               []ciliumv2.PortInfo{{Port: "5353", Protocol: "UDP", Name: "dns"}, {Port: "5353", Protocol: "TCP", Name: "dns-tcp"}},
			},
		},
	}
	for _, o := range []client.Object{kubeDNS, policy} {
		if err := c.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	run := func(extra ...string) (string, error) {
		var out bytes.Buffer
		args := append([]string{"verify", "--kubeconfig", kubeconfig, "--flows", fixtures + "healthy.jsonpb", "--since", "0", "--node-resolvers", "10.99.0.1"}, extra...)
		err := Run(t.Context(), args, &out, io.Discard)
		return out.String(), err
	}
	if out, err := run(); err != nil {
		t.Fatalf("as recorded: %v\n%s", err, out)
	}
	// CoreDNS moves to 1053: the recording no longer shows the path.
	kubeDNS.Spec.Ports[0].TargetPort, kubeDNS.Spec.Ports[1].TargetPort = intstr.FromInt32(1053), intstr.FromInt32(1053)
	if err := c.Update(t.Context(), kubeDNS); err != nil {
		t.Fatal(err)
	}
	out, err := run()
	if !errors.Is(err, ErrVerifyFailed) || !strings.Contains(out, "cache pods reach CoreDNS pods over TCP port 1053") {
		t.Errorf("target port 1053: %v, want a FAIL that checks port 1053\n%s", err, out)
	}
	if out, err := run("--kube-dns-ports", "53"); err != nil {
		t.Errorf("--kube-dns-ports 53 over the cluster's 1053: %v, want the flag to win\n%s", err, out)
	}
	// A flag bound to the configuration wins too: the recording's cache is
	// on 5353, the policy says 5353, the flag says 5354.
	out, err = run("--kube-dns-ports", "53", "--cache-port", "5354")
	if !errors.Is(err, ErrVerifyFailed) || !strings.Contains(out, "on port 53/5354") {
		t.Errorf("--cache-port 5354 over the policy's 5353: %v, want a FAIL that checks 5354\n%s", err, out)
	}
	// A policy created a moment ago: the window starts when it took
	// effect, not 5 minutes back (Relay is unreachable here; the note comes
	// first).
	var stderr bytes.Buffer
	err = Run(t.Context(), []string{"verify", "--kubeconfig", kubeconfig, "--hubble-server", "127.0.0.1:1"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "the redirect was created") || !strings.Contains(stderr.String(), "judging the flows of the last 1s") {
		t.Errorf("a young policy: %v, stderr %q; want the window cut to since it took effect", err, stderr.String())
	}
}
