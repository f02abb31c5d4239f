package lrp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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

// shippedRBAC reads the controller's ServiceAccount, Role and RoleBinding
// from manifests/controller.
func shippedRBAC(t *testing.T) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	t.Helper()
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
	return sa, role, binding
}

// impersonating is a client config acting as the ServiceAccount.
func impersonating(t *testing.T, ns, sa string) (*rest.Config, client.Client) {
	t.Helper()
	cfg := rest.CopyConfig(suite.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa}
	scheme, _ := Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c
}

// TestShippedRBACSuffices runs the controller as the manifests'
// ServiceAccount, by impersonation, with nothing but the shipped Role, on an
// API server that enforces owner-reference permissions (OpenShift's
// OwnerReferencesPermissionEnforcement).
func TestShippedRBACSuffices(t *testing.T) {
	needEnv(t)
	s := &scenario{t: t, ns: "kube-system", c: suite.client, cfg: suite.cfg, names: DefaultNames()}
	sa, role, binding := shippedRBAC(t)
	impersonated, as := impersonating(t, "kube-system", sa.Name)
	// RBAC is enforced: before the binding the identity may not read Services.
	s.create(sa)
	if err := as.List(s.ctx(), &corev1.ServiceList{}, client.InNamespace("kube-system")); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Services before the RoleBinding: %v, want Forbidden (is RBAC on?)", err)
	}
	s.create(role)
	s.create(binding)

	s.install("false", "quay.io/cilium/cilium:v1.20.2", cacheContainerPorts("dns", "dns-tcp", 5353))
	s.startController(impersonated, func(o *Options) { o.LeaderElection = true; o.Cilium.Namespace = "kube-system" })

	p := s.waitPolicy(nil) // cilium.io policies: get, create
	// Services: create, with blockOwnerDeletion on the DaemonSet's reference
	// (daemonsets/finalizers: update), then patched to be owned by the policy.
	s.waitUpstreamOwnedByPolicy(p)
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

// TestApplyErrorIsAnEvent: without update on daemonsets/finalizers, an API
// server that enforces owner-reference permissions refuses every object the
// controller writes. That is a ReconcileFailed Event on the DaemonSet naming
// the object and the API's message, and a metric, not only a log line.
func TestApplyErrorIsAnEvent(t *testing.T) {
	s := newScenario(t)
	sa, role, binding := shippedRBAC(t)
	for _, o := range []client.Object{sa, role, binding} {
		o.SetNamespace(s.ns)
	}
	binding.Subjects[0].Namespace = s.ns
	var rules []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if !slices.Contains(r.Resources, "daemonsets/finalizers") {
			rules = append(rules, r)
		}
	}
	if len(rules) == len(role.Rules) {
		t.Fatal("the shipped Role has no daemonsets/finalizers rule to take away")
	}
	role.Rules = rules
	s.create(sa)
	s.create(role)
	s.create(binding)
	impersonated, _ := impersonating(t, s.ns, sa.Name)
	before := testutil.ToFloat64(reconcileErrors)

	s.healthy()
	s.startController(impersonated)
	note := s.waitEvent(ReasonFailed)
	for _, want := range []string{"failed to apply Service", s.names.UpstreamService, "blockOwnerDeletion"} {
		if !strings.Contains(note, want) {
			t.Errorf("ReconcileFailed event %q does not name %s", note, want)
		}
	}
	if after := testutil.ToFloat64(reconcileErrors); after <= before {
		t.Errorf("lrpdns_controller_reconcile_errors_total %v -> %v, want it to rise", before, after)
	}
	s.consistentlyNoPolicy(time.Second)
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
