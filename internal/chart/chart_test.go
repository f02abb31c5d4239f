package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/lrpdns/lrpdns/cmd/lrpdns/app"
	nodecacheapp "github.com/lrpdns/lrpdns/cmd/node-cache/app"
	"github.com/lrpdns/lrpdns/internal/manifests"
	"github.com/lrpdns/lrpdns/internal/testenv"
)

const (
	chartDir     = "../../charts/lrpdns"
	manifestsDir = "../../manifests"
)

func helm(t *testing.T) string {
	t.Helper()
	h, err := Helm()
	if err != nil {
		t.Skip(err)
	}
	return h
}

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	out, err := Render(helm(t), chartDir, "kube-system", values)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func decode(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// TestChartRendersWhatKustomizeDoes: the chart with default values, and
// with the values that stand for each kustomize component, renders the same
// objects as `kubectl kustomize` on manifests/ with that component.
func TestChartRendersWhatKustomizeDoes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		components []string
		values     map[string]any
	}{
		{"defaults", nil, nil},
		{"kube-dns-udp-53", []string{"components/kube-dns-udp-53"}, map[string]any{"kubeDNS": map[string]any{"udpPortName": "udp-53", "tcpPortName": "tcp-53"}}},
		{"rke2", []string{"components/rke2"}, map[string]any{"kubeDNS": map[string]any{"service": "rke2-coredns-rke2-coredns", "udpPortName": "udp-53", "tcpPortName": "tcp-53"}}},
		{"link-local", []string{"components/link-local"}, map[string]any{"redirectAddresses": []string{"169.254.20.10"}}},
		{"beside-classic", []string{"components/beside-classic"}, map[string]any{
			"redirectAddresses": []string{"169.254.20.10"},
			"nodeCache":         map[string]any{"name": "lrpdns-node-cache", "upstreamService": "lrpdns-upstream"}}},
		{"prometheus and grafana", []string{"components/prometheus", "components/grafana-dashboard"}, map[string]any{
			"serviceMonitors": map[string]any{"enabled": true}, "grafanaDashboard": map[string]any{"enabled": true}}},
		{"network-policy", []string{"components/network-policy"}, map[string]any{"networkPolicy": map[string]any{"enabled": true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := manifests.Render(manifestsDir, tc.components...)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]*unstructured.Unstructured{}
			for _, u := range decode(t, k) {
				want[key(u)] = u
			}
			got := map[string]*unstructured.Unstructured{}
			for _, u := range render(t, tc.values) {
				if _, dup := got[key(u)]; dup {
					t.Errorf("chart renders %s twice", key(u))
				}
				got[key(u)] = u
			}
			if len(want) < 7 {
				t.Fatalf("kustomize rendered %d objects, want the base's 7 at least", len(want))
			}
			for k, w := range want {
				g, ok := got[k]
				if !ok {
					t.Errorf("chart does not render %s", k)
					continue
				}
				if diff := cmp.Diff(w.Object, g.Object); diff != "" {
					t.Errorf("%s (-kustomize +chart):\n%s", k, diff)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("chart renders %s, which kustomize does not", k)
				}
			}
		})
	}
}

// knobs sets every value the chart offers beyond the kustomize manifests.
var knobs = map[string]any{
	"nodeCache": map[string]any{
		"image":        map[string]any{"repository": "registry.example/node-cache", "tag": "v9", "pullPolicy": "IfNotPresent"},
		"resources":    map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "48Mi"}, "limits": map[string]any{"memory": "160Mi"}},
		"goMemLimit":   "140MiB",
		"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":  []any{map[string]any{"key": "dedicated", "operator": "Exists"}},
		"config": map[string]any{
			"clusterDomain": "corp.local",
			"logQueries":    false,
			"noIPv6Lookups": true,
			"cache":         map[string]any{"successCapacity": 20000, "successTTL": "60s", "prefetch": false, "serveStaleMode": "immediate", "hotPath": false},
			"forward": map[string]any{
				"cluster":       map[string]any{"protocol": "tcp", "policy": "round_robin"},
				"external":      map[string]any{"protocol": "udp"},
				"stub":          map[string]any{"policy": "sequential"},
				"maxConcurrent": 500,
			},
			"zones": []any{map[string]any{"zone": "example.corp", "servers": []string{"10.160.0.10", "10.160.0.11:5353"}, "protocol": "tcp", "policy": "sequential", "maxConcurrent": 100}},
		},
	},
	"controller": map[string]any{"replicas": 3, "goMemLimit": "200MiB", "priorityClassName": "", "ciliumVersion": "1.20.2"},
}

// TestChartKnobs: every knob reaches the cache, whose own flag parsing and
// validation render a Corefile from it with the zones file the chart ships.
func TestChartKnobs(t *testing.T) {
	t.Parallel()
	objs := render(t, knobs)
	ds := typed[appsv1.DaemonSet](t, objs, "DaemonSet", "node-local-dns")
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example/node-cache:v9" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s (%s), want registry.example/node-cache:v9 (IfNotPresent)", c.Image, c.ImagePullPolicy)
	}
	if c.Resources.Limits.Memory().String() != "160Mi" || c.Env[1].Name != "GOMEMLIMIT" || c.Env[1].Value != "140MiB" {
		t.Errorf("resources %v, env %v: want a 160Mi limit and GOMEMLIMIT=140MiB", c.Resources, c.Env)
	}
	if ds.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" || ds.Spec.Template.Spec.Tolerations[0].Key != "dedicated" {
		t.Errorf("node selector %v, tolerations %v", ds.Spec.Template.Spec.NodeSelector, ds.Spec.Template.Spec.Tolerations)
	}
	cm := typed[corev1.ConfigMap](t, objs, "ConfigMap", "node-local-dns-zones")
	dir := t.TempDir()
	zones := filepath.Join(dir, "zones.yaml")
	if err := os.WriteFile(zones, []byte(cm.Data["zones.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == "/etc/node-cache"
	}
	args := []string{"render"}
	for _, a := range c.Args {
		if a == "--zones-file=/etc/node-cache/zones.yaml" && mounted {
			a = "--zones-file=" + zones
		}
		args = append(args, a)
	}
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.99.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if err := nodecacheapp.Run(context.Background(), append(args, "--resolv-conf", resolv, "--cluster-dns", "10.96.0.11"), &out, &errs); err != nil {
		t.Fatalf("node-cache %v: %v\n%s", args, err, errs.String())
	}
	corefile := out.String()
	for _, want := range []string{
		"corp.local:5353 in-addr.arpa:5353",
		"success 20000 60",
		"serve_stale 1h immediate 30s",
		"template ANY AAAA",
		"policy round_robin",
		"prefer_udp",
		"example.corp:5353 {",
		"forward . 10.160.0.10:53 10.160.0.11:5353 {\n        force_tcp\n        policy sequential\n        max_concurrent 100\n",
		"max_concurrent 500",
	} {
		if !strings.Contains(corefile, want) {
			t.Errorf("Corefile from the chart's args lacks %q:\n%s", want, corefile)
		}
	}
	if strings.Contains(corefile, "prefetch") {
		t.Errorf("prefetch: false did not reach the cache:\n%s", corefile)
	}
	// logQueries keeps hot out of the Corefile anyway: the flag is the proof.
	if !slices.Contains(c.Args, "--hot-path=false") {
		t.Errorf("hotPath: false did not reach the cache's args %v", c.Args)
	}

	d := typed[appsv1.Deployment](t, objs, "Deployment", "lrpdns-controller")
	if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.PriorityClassName != "" || d.Spec.Template.Spec.Containers[0].Env[0].Value != "200MiB" {
		t.Errorf("controller: replicas %d, priority class %q, env %v", *d.Spec.Replicas, d.Spec.Template.Spec.PriorityClassName, d.Spec.Template.Spec.Containers[0].Env)
	}
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--cilium-version=1.20.2") {
		t.Errorf("ciliumVersion did not reach the controller's args %v", d.Spec.Template.Spec.Containers[0].Args)
	}
	cargs := append(slices.Clone(d.Spec.Template.Spec.Containers[0].Args), "-h") // parse every flag, then stop
	if err := app.Run(context.Background(), cargs, io.Discard, io.Discard); err != nil {
		t.Errorf("lrpdns %v: %v", cargs, err)
	}
}

func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	v, err := manifests.Typed[T](objs, kind, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSchemaRefuses: values.schema.json refuses a misspelt key, a value
// outside a set and a malformed duration, naming the path.
func TestSchemaRefuses(t *testing.T) {
	t.Parallel()
	h := helm(t)
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"misspelt key", map[string]any{"nodeCache": map[string]any{"confg": map[string]any{}}}, "'/nodeCache': additional properties 'confg' not allowed"},
		{"protocol", map[string]any{"nodeCache": map[string]any{"config": map[string]any{"forward": map[string]any{"cluster": map[string]any{"protocol": "force_tcp"}}}}}, "/nodeCache/config/forward/cluster/protocol"},
		{"duration", map[string]any{"nodeCache": map[string]any{"lameduck": "5 seconds"}}, "/nodeCache/lameduck"},
		{"port name", map[string]any{"kubeDNS": map[string]any{"udpPortName": "DNS_UDP"}}, "/kubeDNS/udpPortName"},
		{"cilium version", map[string]any{"controller": map[string]any{"ciliumVersion": "latest"}}, "/controller/ciliumVersion"},
		{"zone without servers", map[string]any{"nodeCache": map[string]any{"config": map[string]any{"zones": []any{map[string]any{"zone": "a.example"}}}}}, "missing property 'servers'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Render(h, chartDir, "kube-system", tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template error = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// TestHelmLint runs helm lint with the default values and with every knob.
func TestHelmLint(t *testing.T) {
	t.Parallel()
	h := helm(t)
	b, err := json.Marshal(knobs)
	if err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(t.TempDir(), "knobs.json")
	if err := os.WriteFile(values, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"lint", "--strict", chartDir}, {"lint", "--strict", chartDir, "--values", values}} {
		out, err := exec.Command(h, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "0 chart(s) failed") {
			t.Errorf("helm %v: %v\n%s", args, err, out)
		}
	}
}

// TestChartAcceptedByAPIServer applies every object the chart renders, with
// the defaults, with every knob and with the kustomize components' values,
// with server-side dry-run to a real kube-apiserver, through the API and
// with kubectl apply --dry-run=server.
func TestChartAcceptedByAPIServer(t *testing.T) {
	h := helm(t)
	env, cfg := testenv.ForTest(t, true)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := env.ControlPlane.AddUser(envtest.User{Name: "chart-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := admin.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, values := range []map[string]any{nil, knobs, {"grafanaDashboard": map[string]any{"enabled": true}, "networkPolicy": map[string]any{"enabled": true}, "redirectAddresses": []string{"169.254.20.10"}}} {
		out, err := Render(h, chartDir, "kube-system", values)
		if err != nil {
			t.Fatal(err)
		}
		objs := decode(t, out)
		if len(objs) < 7 {
			t.Fatalf("values %d: %d objects rendered, want the base's 7 at least", i, len(objs))
		}
		for _, u := range objs {
			err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("lrpdns-test"), client.ForceOwnership, client.DryRunAll)
			if err != nil {
				t.Errorf("values %d: %s rejected: %v", i, key(u), err)
			}
		}
		// And as users check it: helm template | kubectl apply --dry-run=server.
		file := filepath.Join(dir, fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := kubectl.Run("apply", "--dry-run=server", "-f", file)
		applied := 0
		if stdout != nil {
			b, _ := io.ReadAll(stdout)
			applied = strings.Count(string(b), "(server dry run)")
		}
		if err != nil || applied != len(objs) {
			msg, _ := io.ReadAll(stderr)
			t.Errorf("values %d: kubectl apply --dry-run=server: %v, %d of %d objects: %s", i, err, applied, len(objs), msg)
		}
	}
}

// TestREADMEListsEveryValue: each leaf of values.yaml, and each key the
// schema allows under nodeCache.config, has a row in the chart's README.
func TestREADMEListsEveryValue(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	b, err = os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var keys []string
	leaves("", values, &keys)
	// A plain value's row gives it as its default.
	for _, k := range keys {
		v := values
		var leaf any = v
		for _, part := range strings.Split(k, ".") {
			leaf = v[part]
			v, _ = leaf.(map[string]any)
		}
		var want string
		switch x := leaf.(type) {
		case string:
			want = "`" + x + "`"
			if x == "" {
				want = "`\"\"`"
			}
		case bool, float64, int64, int:
			want = fmt.Sprintf("`%v`", x)
		case map[string]any, []any:
			if reflectLen(x) == 0 {
				want = map[bool]string{true: "`{}`", false: "`[]`"}[isMap(x)]
			}
		}
		if want != "" && !strings.Contains(string(readme), "| `"+k+"` | "+want+" |") {
			t.Errorf("README.md's row for `%s` does not give its default %s", k, want)
		}
	}
	schemaLeaves("nodeCache.config", dig(schema, "properties", "nodeCache", "properties", "config"), &keys)
	for _, k := range keys {
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("README.md has no row for `%s`", k)
		}
	}
	if len(keys) < 30 {
		t.Errorf("found %d values, want the chart's 30 or more", len(keys))
	}
}

// leaves collects dotted paths to values that are not maps with keys
// (resources and the like count as one value).
func leaves(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || slices.Contains([]string{"resources", "nodeSelector", "affinity"}, lastPart(prefix)) {
		*out = append(*out, prefix)
		return
	}
	for k, child := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		leaves(p, child, out)
	}
}

func schemaLeaves(prefix string, s map[string]any, out *[]string) {
	props, ok := s["properties"].(map[string]any)
	if !ok {
		*out = append(*out, prefix)
		return
	}
	for k, child := range props {
		schemaLeaves(prefix+"."+k, child.(map[string]any), out)
	}
}

func dig(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		m, _ = m[p].(map[string]any)
	}
	return m
}

func reflectLen(v any) int {
	switch x := v.(type) {
	case map[string]any:
		return len(x)
	case []any:
		return len(x)
	}
	return -1
}

func isMap(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

func lastPart(p string) string {
	return p[strings.LastIndex(p, ".")+1:]
}
