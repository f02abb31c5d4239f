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

var registerOnce sync.Once

// registerMetrics adds the controller's metrics to controller-runtime's
// registry, which the manager serves on --metrics-addr.
func registerMetrics() {
	registerOnce.Do(func() { metrics.Registry.MustRegister(reconcileErrors) })
}
