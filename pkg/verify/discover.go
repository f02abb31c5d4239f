package verify

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Names say where Discover looks.
type Names struct {
	// Namespace and Policy name the CiliumLocalRedirectPolicy.
	Namespace, Policy string
	// DaemonSet is the cache's, read when there is no policy.
	DaemonSet string
	// KubeDNSService is read when there is no policy.
	KubeDNSService string
}

// DefaultNames are the shipped manifests'.
func DefaultNames() Names {
	return Names{Namespace: "kube-system", Policy: "node-local-dns", DaemonSet: "node-local-dns", KubeDNSService: "kube-dns"}
}

// Discover reads from the cluster what verify would otherwise be told: the
// policy's backend selector and port (the cache pods, in the policy's
// namespace), and the redirected Service's selector, namespace and DNS
// target ports (CoreDNS). Without the policy, it reads the cache DaemonSet
// and kube-dns; the note says so.
func Discover(ctx context.Context, c client.Reader, n Names) (Config, string, error) {
	cfg := DefaultConfig()
	cfg.CacheNamespace, cfg.KubeDNSNamespace = n.Namespace, n.Namespace
	note := ""
	svcKey := client.ObjectKey{Namespace: n.Namespace, Name: n.KubeDNSService}
	p := &ciliumv2.CiliumLocalRedirectPolicy{}
	err := c.Get(ctx, client.ObjectKey{Namespace: n.Namespace, Name: n.Policy}, p)
	switch {
	case err == nil:
		cfg.RedirectCreated = p.CreationTimestamp.Time
		cfg.CacheSelector = labelSelector(p.Spec.RedirectBackend.LocalEndpointSelector.MatchLabels)
		if len(p.Spec.RedirectBackend.ToPorts) > 0 {
			port, err := strconv.Atoi(p.Spec.RedirectBackend.ToPorts[0].Port)
			if err != nil {
				return cfg, "", fmt.Errorf("CiliumLocalRedirectPolicy %s/%s backend port %q: want a number", n.Namespace, n.Policy, p.Spec.RedirectBackend.ToPorts[0].Port)
			}
			cfg.CachePort = port
		}
		if m := p.Spec.RedirectFrontend.ServiceMatcher; m != nil {
			svcKey = client.ObjectKey{Namespace: m.Namespace, Name: m.Name}
			if svcKey.Namespace == "" {
				svcKey.Namespace = n.Namespace
			}
		}
	case apierrors.IsNotFound(err):
		note = fmt.Sprintf("no CiliumLocalRedirectPolicy %s/%s: the redirect is not installed; checking against DaemonSet %s/%s",
			n.Namespace, n.Policy, n.Namespace, n.DaemonSet)
		ds := &appsv1.DaemonSet{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: n.Namespace, Name: n.DaemonSet}, ds); err != nil {
			return cfg, note, fmt.Errorf("failed to read DaemonSet %s/%s: %w", n.Namespace, n.DaemonSet, err)
		}
		if ds.Spec.Selector != nil {
			cfg.CacheSelector = labelSelector(ds.Spec.Selector.MatchLabels)
		}
	default:
		return cfg, "", fmt.Errorf("failed to read CiliumLocalRedirectPolicy %s/%s: %w", n.Namespace, n.Policy, err)
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, svcKey, svc); err != nil {
		return cfg, note, fmt.Errorf("failed to read Service %s: %w", svcKey, err)
	}
	cfg.KubeDNSNamespace = svc.Namespace
	cfg.KubeDNSSelector = labelSelector(svc.Spec.Selector)
	cfg.KubeDNSPorts = nil
	for _, sp := range svc.Spec.Ports {
		if sp.Port != 53 {
			continue
		}
		tp := sp.TargetPort.IntValue() // a named target port reads as 0
		if tp == 0 {
			tp = 53
			if sp.TargetPort.String() != "" && sp.TargetPort.String() != "0" {
				note = strings.TrimPrefix(note+"; ", "; ") + fmt.Sprintf("Service %s port %q has a named target port %q: assuming 53 (set --kube-dns-ports)", svcKey, sp.Name, sp.TargetPort.String())
			}
		}
		if !slices.Contains(cfg.KubeDNSPorts, tp) {
			cfg.KubeDNSPorts = append(cfg.KubeDNSPorts, tp)
		}
	}
	if len(cfg.KubeDNSPorts) == 0 {
		cfg.KubeDNSPorts = []int{53}
	}
	return cfg, note, nil
}

// labelSelector is a Hubble label selector for matchLabels.
func labelSelector(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, "k8s:"+k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
