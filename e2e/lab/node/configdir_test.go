package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cm.yaml")
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config}\ndata:\n  bpf-lb-sock-hostns-only: \"true\"\n  routing-mode: tunnel\n"
	if err := os.WriteFile(file, []byte(cm), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "config")
	if err := ConfigDir(file, out); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"bpf-lb-sock-hostns-only": "true", "routing-mode": "tunnel"} {
		got, err := os.ReadFile(filepath.Join(out, k))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", k, got, err, want)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 2 {
		t.Errorf("%d files, want 2", len(entries))
	}

	// What is not a ConfigMap with data is refused, naming the file.
	for name, bad := range map[string]string{
		"not a ConfigMap": "apiVersion: v1\nkind: Secret\ndata: {a: b}\n",
		"no data":         "apiVersion: v1\nkind: ConfigMap\n",
		"unknown field":   "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\nextra: 1\n",
	} {
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := ConfigDir(file, filepath.Join(dir, "bad")); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: err = %v, want one naming %s", name, err, file)
		}
	}
}
