package capfilter

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// This machine's bounding set: every capability up to 40 but
// CAP_SYS_RESOURCE (bit 24).
const status = "Name:\tcat\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n"

func TestBounding(t *testing.T) {
	t.Parallel()
	s, err := Bounding(status)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"CAP_SYS_RESOURCE"}, s.Missing()); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	if _, err := Bounding("Name:\tcat\n"); err == nil {
		t.Error("no CapBnd line: want an error")
	}
	if _, err := Bounding("CapBnd:\tzz\n"); err == nil {
		t.Error("CapBnd zz: want an error")
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	keep, err := Bounding(status)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_BPF"}
	kept := []string{"CAP_CHOWN", "CAP_BPF"}
	caps := map[string][]string{"bounding": all, "effective": all, "permitted": all}
	wantCaps := map[string][]string{"bounding": kept, "effective": kept, "permitted": kept}
	for _, tc := range []struct {
		name     string
		doc      any
		spec     bool
		want     any
		wantDrop []string
	}{
		{
			name: "bundle config.json", spec: true,
			doc:      map[string]any{"ociVersion": "1.2.0", "process": map[string]any{"args": []string{"/sbin/init"}, "capabilities": caps}},
			want:     map[string]any{"ociVersion": "1.2.0", "process": map[string]any{"args": []any{"/sbin/init"}, "capabilities": wantCaps}},
			wantDrop: []string{"CAP_SYS_RESOURCE"},
		},
		{
			name:     "exec process file",
			doc:      map[string]any{"args": []string{"sh"}, "capabilities": caps},
			want:     map[string]any{"args": []any{"sh"}, "capabilities": wantCaps},
			wantDrop: []string{"CAP_SYS_RESOURCE"},
		},
		{
			name: "nothing to take", spec: true,
			doc:  map[string]any{"process": map[string]any{"capabilities": wantCaps}},
			want: map[string]any{"process": map[string]any{"capabilities": wantCaps}},
		},
		{
			name: "no capabilities", spec: true,
			doc:  map[string]any{"process": map[string]any{"args": []string{"true"}}},
			want: map[string]any{"process": map[string]any{"args": []any{"true"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, _ := json.Marshal(tc.doc)
			out, dropped, err := Filter(in, keep, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantDrop, dropped); diff != "" {
				t.Errorf("dropped (-want +got):\n%s", diff)
			}
			var got, want any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			w, _ := json.Marshal(tc.want)
			_ = json.Unmarshal(w, &want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("document (-want +got):\n%s", diff)
			}
			if len(tc.wantDrop) == 0 && string(out) != string(in) {
				t.Errorf("nothing taken, but the document changed: %s -> %s", in, out)
			}
		})
	}
	if _, _, err := Filter([]byte("{"), keep, true); err == nil {
		t.Error("a broken document: want an error")
	}
}

func TestTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		wantPath string
		wantSpec bool
	}{
		// containerd's runc shim and Docker's.
		{[]string{"--root", "/run/containerd/runc/k8s.io", "--log", "/x/log.json", "--log-format", "json", "create", "--bundle", "/b/abc", "--pid-file", "/b/abc/init.pid", "abc"}, "/b/abc/config.json", true},
		{[]string{"create", "--bundle=/b/abc/", "abc"}, "/b/abc/config.json", true},
		{[]string{"run", "-b", "/b/x", "x"}, "/b/x/config.json", true},
		{[]string{"--root", "/r", "exec", "--process", "/tmp/runc-process1", "--detach", "--pid-file", "/p", "abc"}, "/tmp/runc-process1", false},
		{[]string{"exec", "-p=/tmp/p", "abc"}, "/tmp/p", false},
		{[]string{"create", "abc"}, "/cwd/config.json", true},
		{[]string{"--root", "/r", "start", "abc"}, "", false},
		{[]string{"delete", "--force", "abc"}, "", false},
		{[]string{"exec", "abc", "sh"}, "", false},
	} {
		path, spec := Target(tc.args, "/cwd")
		if path != tc.wantPath || spec != tc.wantSpec {
			t.Errorf("Target(%q) = %q, %v; want %q, %v", tc.args, path, spec, tc.wantPath, tc.wantSpec)
		}
	}
}
