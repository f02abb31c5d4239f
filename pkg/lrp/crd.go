package lrp

import (
	"context"
	"errors"
	"fmt"
	"time"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
)

// policiesServed reports whether the API serves CiliumLocalRedirectPolicy:
// always, once the controller watches policies; else it asks discovery.
func (r *Reconciler) policiesServed() (bool, error) {
	if r.watching {
		return true, nil
	}
	return policyCRDServed(r.Discovery)
}

// policyCRDServed asks discovery whether cilium.io/v2 serves the policy
// kind: the one answer, at start and while waiting for the CRD.
func policyCRDServed(dc discovery.DiscoveryInterface) (bool, error) {
	list, err := dc.ServerResourcesForGroupVersion(ciliumv2.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to discover %s: %w", ciliumv2.SchemeGroupVersion, err)
	}
	for _, res := range list.APIResources {
		if res.Kind == ciliumv2.CLRPKindDefinition {
			return true, nil
		}
	}
	return false, nil
}

// ErrPolicyCRDInstalled stops a controller that started without the
// CiliumLocalRedirectPolicy CRD once it appears, so that it restarts
// watching policies.
var ErrPolicyCRDInstalled = errors.New("the CiliumLocalRedirectPolicy CRD was installed after start: restarting to watch it")

func (r *Reconciler) awaitPolicyCRD(ctx context.Context) error {
	t := time.NewTicker(r.recheck())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if served, err := r.policiesServed(); err == nil && served {
				return ErrPolicyCRDInstalled
			}
		}
	}
}
