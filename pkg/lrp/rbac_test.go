package lrp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestShippedRBACSuffices runs the controller as the manifests'
// ServiceAccount, by impersonation, with nothing but the shipped Role.
func TestShippedRBACSuffices(t *testing.T) {
	needEnv(t)
	s := &scenario{t: t, ns: "kube-system", c: suite.client, cfg: suite.cfg, names: DefaultNames()}
	sa := &corev1.ServiceAccount{}
	role := &rbacv1.Role{}
	binding := &rbacv1.RoleBinding{}
	for file, obj := range map[string]client.Object{"serviceaccount.yaml": sa, "role.yaml": role, "rolebinding.yaml": binding} {
		b, err := os.ReadFile(filepath.Join("..", "..", "manifests", "controller", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if role.Namespace != "kube-system" || len(role.Rules) == 0 {
		t.Fatalf("role.yaml: want a Role in kube-system with rules, got %s/%s", role.Namespace, role.Name)
	}
	impersonated := rest.CopyConfig(suite.cfg)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:kube-system:" + sa.Name}
	scheme, _ := Scheme()
	as, err := client.New(impersonated, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC is enforced: before the binding the identity may not read Services.
	s.create(sa)
	if err := as.List(s.ctx(), &corev1.ServiceList{}, client.InNamespace("kube-system")); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Services before the RoleBinding: %v, want Forbidden (is RBAC on?)", err)
	}
	s.create(role)
	s.create(binding)

	s.install("false", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))
	s.startController(impersonated, func(o *Options) { o.LeaderElection = true; o.Cilium.Namespace = "kube-system" })

	s.waitPolicy(nil)                       // cilium.io policies: get, create
	if _, err := s.upstream(); err != nil { // Services: create
		t.Fatalf("upstream Service: %v", err)
	}
	s.waitEvent(ReasonCreated)     // events.k8s.io: create
	s.waitEvent(ReasonLRPDisabled) // cilium-config: get
	lease := &coordinationv1.Lease{}
	if err := s.c.Get(s.ctx(), client.ObjectKey{Namespace: "kube-system", Name: "lrpdns-controller"}, lease); err != nil {
		t.Fatalf("leader election Lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("Lease has no holder")
	}
}

// TestCRDMissing runs on a second API server without the CRD: the
// controller says so in an Event, and once the CRD is installed it stops
// with ErrPolicyCRDInstalled so that it restarts watching policies.
func TestCRDMissing(t *testing.T) {
	needEnv(t)
	env, cfg, err := startEnv(false)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop() //nolint:errcheck // best effort
	scheme, _ := Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := newScenarioOn(t, c, cfg)
	s.install("true", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))

	mgr, err := newManager(cfg, Options{
		Names: s.names, Cilium: CiliumNames{Namespace: s.ns, ConfigMap: "cilium-config", DaemonSet: "cilium"},
		Recheck: 300 * time.Millisecond, MetricsAddr: "0", HealthAddr: "0", skipNameValidation: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	note := s.waitEvent(ReasonCRDMissing)
	if want := "ciliumlocalredirectpolicies.cilium.io"; !strings.Contains(note, want) {
		t.Errorf("event %q does not name the CRD %s", note, want)
	}
	crd := clrpCRD()
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{&crd}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrPolicyCRDInstalled) {
			t.Fatalf("manager stopped with %v, want ErrPolicyCRDInstalled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not notice the CRD within 30s")
	}
}
