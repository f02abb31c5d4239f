package lrp

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Bounds that do not grow with the node count: what one rollout may cost
// the API server besides the reads the informers serve.
const (
	// A port change withdraws the policy and re-creates it (two writes);
	// the rest is slack for a repaired conflict.
	scaleMaxWrites = 6
	// Withdrawn, waiting (once per cause), created, and slack.
	scaleMaxEvents = 6
)

// TestRolloutAtScale (issue: quiet at 5,000 nodes): a DaemonSet rollout on
// N simulated nodes, its status written by the test once per node as the
// DaemonSet controller would, first with the same ports (the policy stays),
// then to another port (the policy is withdrawn, waits, comes back). For
// each, the reconciles, API writes and Events it cost, and the test
// process's CPU time (controller and the test's own status writes). Writes
// and Events are bounded by constants, not by N. Sizes:
// LRPDNS_SCALE_NODES (default 100,1000; make bench adds 5000).
func TestRolloutAtScale(t *testing.T) {
	sizes := []int{100, 1000}
	if v := os.Getenv("LRPDNS_SCALE_NODES"); v != "" {
		sizes = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("LRPDNS_SCALE_NODES=%q: want node counts separated by commas", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) { rolloutAtScale(t, int32(n)) })
	}
}

func rolloutAtScale(t *testing.T, n int32) {
	s := newScenario(t)
	s.healthy()
	s.setRollout(n, n, n)
	var reconciles atomic.Int64
	s.startController(s.cfg, func(o *Options) { o.reconciled = func() { reconciles.Add(1) } })
	s.waitPolicy(nil)
	time.Sleep(time.Second)

	for _, rollout := range []struct {
		name string
		// change is the template change that starts the rollout.
		change func()
	}{
		{"same ports", func() {
			ds := s.cacheDaemonSet()
			ds.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": time.Now().Format(time.RFC3339)}
			if err := s.c.Update(s.ctx(), ds); err != nil {
				t.Fatal(err)
			}
		}},
		{"port change", func() {
			ds := s.cacheDaemonSet()
			port := ds.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort
			ds.Spec.Template.Spec.Containers[0].Ports = cacheContainerPorts("dns", "dns-tcp", port^1)
			if err := s.c.Update(s.ctx(), ds); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		events0, writes0, reconciles0 := len(s.allEvents()), s.writes.Load(), reconciles.Load()
		cpu0 := cpuTime(t)
		rollout.change()
		// The DaemonSet controller's status writes: one per node done, the
		// old pod serving until the new one is ready (maxUnavailable 0).
		for updated := int32(0); updated <= n; updated++ {
			s.setRollout(n, updated, n)
		}
		s.waitPolicy(nil)
		time.Sleep(2 * time.Second) // reconciles in flight, Events in the recorder's batch
		cpu := cpuTime(t) - cpu0
		events, writes, recs := len(s.allEvents())-events0, s.writes.Load()-writes0, reconciles.Load()-reconciles0
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		t.Logf("%d nodes, rollout with %s: %d status updates, %d reconciles, %d API writes, %d Events; test process CPU %v, heap in use %.1f MiB",
			n, rollout.name, n+1, recs, writes, events, cpu.Round(time.Millisecond), float64(ms.HeapInuse)/(1<<20))
		if writes > scaleMaxWrites {
			t.Errorf("%d nodes, %s: %d API writes, want at most %d whatever the node count", n, rollout.name, writes, scaleMaxWrites)
		}
		if events > scaleMaxEvents {
			t.Errorf("%d nodes, %s: %d Events, want at most %d whatever the node count", n, rollout.name, events, scaleMaxEvents)
		}
		if recs > int64(n)+10 {
			t.Errorf("%d nodes, %s: %d reconciles for %d status updates", n, rollout.name, recs, n+1)
		}
	}
}

// cpuTime is the CPU time the test process has used, user and system.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
