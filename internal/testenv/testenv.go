// Package testenv starts a real kube-apiserver and etcd for integration
// tests (envtest, binaries from KUBEBUILDER_ASSETS, built by
// hack/k8s-bins.sh), with the OwnerReferencesPermissionEnforcement admission
// plugin on as OpenShift has it, and Cilium's own CiliumLocalRedirectPolicy and CiliumNetworkPolicy CRDs from the
// cilium module. Only tests import it.
package testenv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"

	ciliumclient "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/client"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ErrNoAssets says why integration tests skip.
var ErrNoAssets = errors.New("KUBEBUILDER_ASSETS is unset; run make test, which builds kube-apiserver and etcd from the module proxy")

// Start starts kube-apiserver and etcd, with the CiliumLocalRedirectPolicy
// and CiliumNetworkPolicy CRDs when withCRD.
func Start(withCRD bool) (*envtest.Environment, *rest.Config, error) {
	return start(withCRD, "")
}

// DualStackServices are the Service ranges of a dual-stack API server.
const DualStackServices = "10.0.0.0/24,fd00:10:96::/112"

// start starts the API server with serviceRanges as its
// --service-cluster-ip-range ("": envtest's single-stack default).
func start(withCRD bool, serviceRanges string) (*envtest.Environment, *rest.Config, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, nil, ErrNoAssets
	}
	env := &envtest.Environment{}
	// As on OpenShift: owner references with blockOwnerDeletion need update
	// on the owner's finalizers.
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	if serviceRanges != "" {
		env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", serviceRanges)
	}
	if withCRD {
		clrp, cnp := CLRPCRD(), ciliumclient.GetPregeneratedCRD(slog.New(slog.DiscardHandler), ciliumclient.CNPCRDName)
		env.CRDs = []*apiextensionsv1.CustomResourceDefinition{&clrp, &cnp}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("failed to start envtest: %w", err)
	}
	return env, cfg, nil
}

// ForTest starts an API server for one test and stops it when the test
// ends; it skips the test with -short or without KUBEBUILDER_ASSETS.
func ForTest(t testing.TB, withCRD bool) (*envtest.Environment, *rest.Config) {
	return forTest(t, withCRD, "")
}

// ForTestDualStack is ForTest with IPv4 and IPv6 Service ranges
// (DualStackServices).
func ForTestDualStack(t testing.TB, withCRD bool) (*envtest.Environment, *rest.Config) {
	return forTest(t, withCRD, DualStackServices)
}

func forTest(t testing.TB, withCRD bool, serviceRanges string) (*envtest.Environment, *rest.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs kube-apiserver + etcd; skipped with -short")
	}
	env, cfg, err := start(withCRD, serviceRanges)
	if errors.Is(err, ErrNoAssets) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env, cfg
}

// CLRPCRD is the CiliumLocalRedirectPolicy CRD embedded in the cilium module.
func CLRPCRD() apiextensionsv1.CustomResourceDefinition {
	return ciliumclient.GetPregeneratedCRD(slog.New(slog.DiscardHandler), ciliumclient.CLRPCRDName)
}
