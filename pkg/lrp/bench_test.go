package lrp

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lrpdns/lrpdns/internal/dnsbench"
)

func newBenchScenario(b *testing.B) *scenario {
	b.Helper()
	return newScenarioOn(b, suite.client, suite.cfg)
}

// BenchmarkConvergence is the time from the DaemonSet reporting a ready pod
// to the policy being created, seen through a watch.
func BenchmarkConvergence(b *testing.B) {
	if suite.err != nil {
		b.Skip(suite.err)
	}
	s := newBenchScenario(b)
	s.cilium("true", "quay.io/cilium/cilium:v1.20.2")
	s.kubeDNS(dnsServicePortsFixture())
	s.daemonSet(cacheContainerPorts("dns", "dns-tcp", 5353))
	s.upstreamEndpoints(true)
	s.startController(s.cfg)
	scheme, _ := Scheme()
	wc, err := client.NewWithWatch(s.cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s.setReady(0)
		if p, err := s.policy(); err == nil {
			if err := s.c.Delete(s.ctx(), p); err != nil {
				b.Fatal(err)
			}
		}
		w, err := wc.Watch(s.ctx(), &ciliumv2.CiliumLocalRedirectPolicyList{}, client.InNamespace(s.ns))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s.setReady(1)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				break
			}
		}
		b.StopTimer()
		w.Stop()
		b.StartTimer()
	}
}

// BenchmarkControllerRSS runs the lrpdns binary against a cluster holding
// 100 or 10,000 unrelated pods in the controller's own namespace and reports
// its resident memory once it has converged. Run with -benchtime 1x.
func BenchmarkControllerRSS(b *testing.B) {
	if suite.err != nil {
		b.Skip(suite.err)
	}
	bin := filepath.Join(b.TempDir(), "lrpdns")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lrpdns/lrpdns/cmd/lrpdns").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	user, err := suite.env.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		b.Fatal(err)
	}
	kcPath := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, pods := range []int{100, 10000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			s := newBenchScenario(b)
			s.healthy()
			createPods(b, s, pods)
			var rss uint64
			for range b.N {
				cmd := exec.Command(bin, "controller", "--kubeconfig", kcPath, "--namespace", s.ns,
					"--leader-elect=false", "--metrics-addr", "0", "--health-addr", "0")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				s.waitPolicy(nil)
				time.Sleep(2 * time.Second) // settle
				rss, err = dnsbench.RSS(cmd.Process.Pid)
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if err != nil {
					b.Fatalf("%v\n%s", err, out.String())
				}
				if p, err := s.policy(); err == nil {
					_ = s.c.Delete(s.ctx(), p)
				}
			}
			b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
		})
	}
}

func createPods(b *testing.B, s *scenario, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%05d", i), Namespace: s.ns, Labels: map[string]string{"app": "unrelated"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/unrelated:1"}}},
				}
				if err := s.c.Create(s.ctx(), pod); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}
