package lrp

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// reconcileErrors counts reconciles that failed to read or write an object;
// each is also an Event on the DaemonSet.
var reconcileErrors = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "lrpdns_controller_reconcile_errors_total",
	Help: "Reconciles that failed to read or write an object (each is also a ReconcileFailed Event on the DaemonSet).",
})

// waitingSince is when the redirect of kube-dns began to wait for the
// caches (WaitingForCache), 0 while it is in place or not waiting: alert on
// time() - lrpdns_redirect_waiting_since_timestamp_seconds when it is not 0.
var waitingSince = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "lrpdns_redirect_waiting_since_timestamp_seconds",
	Help: "When the redirect of kube-dns began to wait for the cache pods (Unix seconds); 0 while it is not waiting.",
})

var registerOnce sync.Once

// registerMetrics adds the controller's metrics to controller-runtime's
// registry, which the manager serves on --metrics-addr.
func registerMetrics() {
	registerOnce.Do(func() { metrics.Registry.MustRegister(reconcileErrors, waitingSince) })
}
