//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/e2e/judge"
	"github.com/lrpdns/lrpdns/pkg/corefile"
)

// control is a deliberately broken product: the suite runs a scenario
// against it and must fail it, or the suite cannot see that fault.
type control struct {
	name string
	// breakIt breaks the product (not under load); restore undoes it.
	breakIt, restore func(t *testing.T)
	// key is the scenario the breakage is judged by; action runs under
	// load.
	key    string
	action func(t *testing.T, ev *judge.Evidence)
	// want is what the findings must say: that the suite failed the
	// control for its fault, not another.
	want string
	// load is how long the clients run (0: 45 s).
	load time.Duration
}

// negativeControls runs every control: each must make the scenario fail,
// and the message names the control and what caught it.
func (s *suite) negativeControls(t *testing.T) {
	s.controlRunning = true
	defer func() { s.controlRunning = false }()
	for _, c := range s.controls() {
		t.Run(c.name, func(t *testing.T) {
			c.breakIt(t)
			defer c.restore(t)
			load := c.load
			if load == 0 {
				load = 45 * time.Second
			}
			fails := s.runLoad(t, c.key, "negative control: "+c.name, load, func(ev *judge.Evidence) { c.action(t, ev) })
			all := strings.Join(fails, "\n")
			if len(fails) == 0 || !strings.Contains(all, c.want) {
				for _, f := range fails {
					t.Logf("finding: %s", firstBytes(f, 300))
				}
				errorf(t, "negative control %q passed the suite (%d findings, none saying %q): a product broken this way would pass it", c.name, len(fails), c.want)
				return
			}
			// The whole line that says it, from its start.
			i := strings.Index(all, c.want)
			line := all[strings.LastIndex(all[:i], "\n")+1:]
			line, _, _ = strings.Cut(line, "\n")
			t.Logf("negative control %q failed the suite, as it must: %d findings, among them: %s", c.name, len(fails), firstBytes(line, 400))
		})
	}
}

// staleGap is how long the serve_stale control keeps the upstream away:
// every answer the cache holds has expired by then, whenever it was
// fetched. The cache keeps a success answer SuccessTTL (30 s) at most, and
// CoreDNS answers on through its lameduck (5 s) after it is scaled down;
// kind's CoreDNS gives cluster names a TTL of 30 s, and with a 15 s gap
// no cached name expired inside it in one CI run: the control passed.
var staleGap = corefile.DefaultCache().SuccessTTL + 10*time.Second

// controlRollouts is how many rollouts the lameduck and readiness controls
// make under one load, rolloutsLoad long (a rollout of two nodes takes
// about 20 s on kind).
const (
	controlRollouts = 3
	rolloutsLoad    = 110 * time.Second
)

// firstBytes is s cut to n bytes.
func firstBytes(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (s *suite) controls() []control {
	// Three rollouts: one cache pod exit per node each. Under socket load
	// balancing with socket termination a single rollout of the broken
	// cache lost as few as 3 queries of all clients (1 finding, a CI
	// rehearsal), too near a pass for a control.
	rolloutRestart := func(t *testing.T, _ *judge.Evidence) {
		for range controlRollouts {
			s.restartCaches(t)
		}
	}
	argOf := func(prefix string) func(*corev1.Container) string {
		return func(c *corev1.Container) string {
			for _, a := range c.Args {
				if strings.HasPrefix(a, prefix) {
					return a
				}
			}
			return ""
		}
	}
	lameduck, staleArg := argOf("--lameduck="), argOf("--serve-stale=")
	var keepLameduck, keepProbe string
	return []control{
		{
			// The pod exits at SIGTERM while Cilium still sends it queries.
			name: "a cache without a lameduck (--lameduck=0s) rolled out",
			key:  "negative control",
			breakIt: func(t *testing.T) {
				keepLameduck = lameduck(&s.cacheDaemonSet(t).Spec.Template.Spec.Containers[0])
				s.setCacheArg(t, "--lameduck=", "--lameduck=0s")
			},
			restore: func(t *testing.T) { s.setCacheArg(t, "--lameduck=", keepLameduck) },
			action:  rolloutRestart,
			load:    rolloutsLoad,
			want:    "failed: ",
		},
		{
			// Readiness that stays up through the lameduck: Cilium keeps the
			// pod a backend until it has exited.
			name: "a cache whose readiness stays up after SIGTERM (probe on /health)",
			key:  "negative control",
			breakIt: func(t *testing.T) {
				probe := s.cacheDaemonSet(t).Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet
				keepProbe = fmt.Sprintf(`{"path":%q,"port":%d}`, probe.Path, probe.Port.IntValue())
				s.patchDaemonSet(t, `{"spec":{"template":{"spec":{"containers":[{"name":"node-cache","readinessProbe":{"httpGet":{"path":"/health","port":8080}}}]}}}}`)
				s.waitRolledOut(t)
			},
			restore: func(t *testing.T) {
				s.patchDaemonSet(t, `{"spec":{"template":{"spec":{"containers":[{"name":"node-cache","readinessProbe":{"httpGet":`+keepProbe+`}}]}}}}`)
				s.waitRolledOut(t)
			},
			action: rolloutRestart,
			load:   rolloutsLoad,
			want:   "failed: ",
		},
		{
			// Cached names fail while the upstream is away.
			name: "serve_stale off (--serve-stale=false) while kube-dns-upstream is deleted",
			key:  "upstream negative control",
			breakIt: func(t *testing.T) {
				if staleArg(&s.cacheDaemonSet(t).Spec.Template.Spec.Containers[0]) != "" {
					fatalf(t, "the DaemonSet already sets --serve-stale")
				}
				s.setCacheArg(t, "--serve-stale=", "--serve-stale=false")
			},
			restore: func(t *testing.T) { s.setCacheArg(t, "--serve-stale=", "") },
			action: func(t *testing.T, ev *judge.Evidence) {
				// Deleting kube-dns-upstream alone takes nothing from a busy
				// cache: its TCP connections to CoreDNS pods were translated
				// at connect() and carry on (seen in this control's flows:
				// no SYN from a cache during the gap, answers throughout).
				// CoreDNS scaled to zero with it closes them, so forwards
				// need a new connection to a Service that is not there.
				replicas := s.scaleCoreDNS(t, 0)
				s.deleteUpstreamFor(t, ev, staleGap, func() { s.scaleCoreDNS(t, replicas) })
			},
			load: staleGap + 40*time.Second,
			want: "is not a never-seen cluster name",
		},
		{
			// The DaemonSet rolls to another port under a policy that
			// still says the old one.
			name: "the controller stopped during a port change",
			key:  "negative control",
			breakIt: func(t *testing.T) {
				s.scaleController(t, 0)
			},
			restore: func(t *testing.T) {
				s.scaleController(t, 2)
				// The old policy is still there, on the old port: wait for
				// the controller to have replaced it, or the next scenario
				// starts under this control's breakage (a CI run's "cache
				// DaemonSet deleted" lost up to 27 queries per client to
				// it, "no route to host", 4 s after this restore returned).
				port := strconv.Itoa(int(s.cachePort(t)))
				s.waitRedirect(t, func(p *ciliumv2.CiliumLocalRedirectPolicy) bool {
					for _, bp := range p.Spec.RedirectBackend.ToPorts {
						if bp.Port != port {
							return false
						}
					}
					return true
				})
				time.Sleep(5 * time.Second) // Cilium programs the new policy
			},
			action: func(t *testing.T, _ *judge.Evidence) {
				port := s.cachePort(t)
				s.setCachePort(t, port, port^1) // 5354 <-> 5355, 5353 <-> 5352
				s.waitRolledOut(t)
				time.Sleep(5 * time.Second)
			},
			want: "failed: ",
		},
	}
}

// restartCaches restarts the cache DaemonSet, as kubectl rollout restart
// does, and waits for the rollout.
func (s *suite) restartCaches(t *testing.T) {
	s.patchDaemonSet(t, fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano)))
	time.Sleep(2 * time.Second)
	s.waitRolledOut(t)
}

func (s *suite) waitRolledOut(t *testing.T) {
	time.Sleep(time.Second)
	waitFor(t, 3*time.Minute, "the rollout to finish", func() bool { return s.rolledOut(t.Context()) })
}

// setCacheArg replaces the cache's argument with prefix by arg ("": none),
// adding it when missing, and waits for the rollout.
func (s *suite) setCacheArg(t *testing.T, prefix, arg string) {
	ds := s.cacheDaemonSet(t)
	c := &ds.Spec.Template.Spec.Containers[0]
	var args []string
	for _, a := range c.Args {
		if !strings.HasPrefix(a, prefix) {
			args = append(args, a)
		}
	}
	if arg != "" {
		args = append(args, arg)
	}
	c.Args = args
	if err := s.c.Update(t.Context(), ds); err != nil {
		fatalf(t, "set %s on the cache: %v", arg, err)
	}
	s.waitRolledOut(t)
	s.waitRedirect(t, nil)
}

// cachePort is the cache's DNS port now.
func (s *suite) cachePort(t *testing.T) int32 {
	for _, p := range s.cacheDaemonSet(t).Spec.Template.Spec.Containers[0].Ports {
		if p.Protocol == corev1.ProtocolUDP {
			return p.ContainerPort
		}
	}
	fatal(t, "the cache has no UDP container port")
	return 0
}

// setCachePort moves the cache's DNS port from old to port (args and
// container ports), without waiting.
func (s *suite) setCachePort(t *testing.T, old, port int32) {
	ds := s.cacheDaemonSet(t)
	c := &ds.Spec.Template.Spec.Containers[0]
	for i, a := range c.Args {
		if a == fmt.Sprintf("--port=%d", old) {
			c.Args[i] = fmt.Sprintf("--port=%d", port)
		}
	}
	for i := range c.Ports {
		if c.Ports[i].ContainerPort == old {
			c.Ports[i].ContainerPort = port
		}
	}
	if err := s.c.Update(t.Context(), ds); err != nil {
		fatal(t, err)
	}
}

// deleteUpstreamFor deletes kube-dns-upstream with the controller stopped,
// brings the controller back after gone, and records the evidence the
// upstream gap's allowance needs.
func (s *suite) deleteUpstreamFor(t *testing.T, ev *judge.Evidence, gone time.Duration, then ...func()) {
	ctx := t.Context()
	key := client.ObjectKey{Namespace: s.names.Namespace, Name: s.names.UpstreamService}
	before := &corev1.Service{}
	if err := s.c.Get(ctx, key, before); err != nil {
		fatal(t, err)
	}
	s.scaleController(t, 0)
	ev.UpstreamDeleted = time.Now()
	if err := s.c.Delete(ctx, before); err != nil {
		fatal(t, err)
	}
	time.Sleep(gone)
	for _, f := range then {
		f()
	}
	s.scaleController(t, 2)
	after := &corev1.Service{}
	waitFor(t, 2*time.Minute, "kube-dns-upstream to be re-created", func() bool {
		return s.c.Get(ctx, key, after) == nil && after.UID != before.UID && s.readyEndpoints(ctx, after) > 0
	})
	ev.UpstreamReady = time.Now()
}

// scaleCoreDNS sets the replicas of the Deployment behind kube-dns and
// returns what it had.
func (s *suite) scaleCoreDNS(t *testing.T, n int32) int32 {
	t.Helper()
	ctx := t.Context()
	svc := &corev1.Service{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: s.names.KubeDNSService}, svc); err != nil {
		fatal(t, err)
	}
	var list appsv1.DeploymentList
	if err := s.c.List(ctx, &list, client.InNamespace(svc.Namespace)); err != nil {
		fatal(t, err)
	}
	for i := range list.Items {
		d := &list.Items[i]
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		had := ptr.Deref(d.Spec.Replicas, 1)
		patch := client.MergeFrom(d.DeepCopy())
		d.Spec.Replicas = &n
		if err := s.c.Patch(ctx, d, patch); err != nil {
			fatal(t, err)
		}
		return had
	}
	fatalf(t, "no Deployment runs the pods of Service %s", svc.Name)
	return 0
}
