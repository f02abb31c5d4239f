package kubednsconfig

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lrpdns/lrpdns/pkg/corefile"
)

func TestParse(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	tests := []struct {
		name      string
		stubs     string
		upstreams string
		want      Config
	}{
		{name: "empty"},
		{name: "whitespace only", stubs: " \n", upstreams: "\n"},
		{
			name:  "stub domains sorted, ports and IPv6",
			stubs: `{"zeta.local": ["10.0.0.1:5300"], "acme.local": ["10.0.0.10", "fd00::10", "[fd00::11]:5300"]}`,
			want: Config{StubDomains: []corefile.StubDomain{
				{Domain: "acme.local", Servers: []netip.AddrPort{ap("10.0.0.10:53"), ap("[fd00::10]:53"), ap("[fd00::11]:5300")}},
				{Domain: "zeta.local", Servers: []netip.AddrPort{ap("10.0.0.1:5300")}},
			}},
		},
		{
			name:      "upstream nameservers",
			upstreams: `["1.1.1.1", "[2606:4700::1111]:53"]`,
			want:      Config{UpstreamNameservers: []netip.AddrPort{ap("1.1.1.1:53"), ap("[2606:4700::1111]:53")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse([]byte(tt.stubs), []byte(tt.upstreams))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("Parse() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stubs, upstreams string
		wantKey, wantValue     string
	}{
		{"stub JSON", `{"acme.local": "10.0.0.1"}`, "", KeyStubDomains, `{"acme.local": "10.0.0.1"}`},
		{"stub hostname server", `{"acme.local": ["ns.acme.local"]}`, "", `stubDomains["acme.local"]`, "ns.acme.local"},
		{"stub bad domain", `{"acme local": ["10.0.0.1"]}`, "", KeyStubDomains, "acme local"},
		{"stub no servers", `{"acme.local": []}`, "", `stubDomains["acme.local"]`, "[]"},
		{"stub port 0", `{"acme.local": ["10.0.0.1:0"]}`, "", `stubDomains["acme.local"]`, "10.0.0.1:0"},
		{"upstream JSON", "", `"1.1.1.1"`, KeyUpstreamNameservers, `"1.1.1.1"`},
		{"upstream too many", "", `["1.1.1.1","1.0.0.1","8.8.8.8","8.8.4.4"]`, KeyUpstreamNameservers, "[1.1.1.1 1.0.0.1 8.8.8.8 8.8.4.4]"},
		{"upstream unspecified", "", `["0.0.0.0"]`, KeyUpstreamNameservers, "0.0.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.stubs), []byte(tt.upstreams))
			var e *corefile.FieldError
			if !errors.As(err, &e) {
				t.Fatalf("Parse() error = %v, want *corefile.FieldError", err)
			}
			if e.Field != FieldPrefix+tt.wantKey || e.Value != tt.wantValue || e.Want == "" {
				t.Errorf("Parse() error = %+v, want key %q value %q and what is accepted", e, tt.wantKey, tt.wantValue)
			}
			if !strings.Contains(err.Error(), tt.wantKey) {
				t.Errorf("error %q does not name the key %q", err, tt.wantKey)
			}
		})
	}
}

func TestReadDir(t *testing.T) {
	t.Parallel()
	t.Run("absent directory is empty", func(t *testing.T) {
		t.Parallel()
		got, err := ReadDir(filepath.Join(t.TempDir(), "absent"))
		if err != nil || len(got.StubDomains) != 0 || len(got.UpstreamNameservers) != 0 {
			t.Fatalf("ReadDir(absent) = %+v, %v; want empty, nil", got, err)
		}
	})
	t.Run("ConfigMap volume layout", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		data := filepath.Join(dir, "..2026_11_24_00_00_00.000000001")
		if err := os.Mkdir(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, KeyUpstreamNameservers), []byte(`["9.9.9.9"]`), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, l := range [][2]string{{filepath.Base(data), "..data"}, {"..data/" + KeyUpstreamNameservers, KeyUpstreamNameservers}} {
			if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir() error = %v", err)
		}
		if want := []netip.AddrPort{netip.MustParseAddrPort("9.9.9.9:53")}; !cmp.Equal(want, got.UpstreamNameservers, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })) {
			t.Errorf("UpstreamNameservers = %v, want %v", got.UpstreamNameservers, want)
		}
	})
}

// FuzzParse checks that any input either parses to servers with a port and
// domains a Corefile can hold, or fails with a *corefile.FieldError naming a key.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"acme.local": ["10.0.0.10", "[fd00::10]:5300"]}`), []byte(`["1.1.1.1"]`))
	f.Add([]byte(`{}`), []byte(`[]`))
	f.Add([]byte(``), []byte(`["[::1]:53", "8.8.8.8:5353"]`))
	f.Fuzz(func(t *testing.T, stubs, upstreams []byte) {
		c, err := Parse(stubs, upstreams)
		if err != nil {
			var e *corefile.FieldError
			if !errors.As(err, &e) || (e.Field != FieldPrefix+KeyUpstreamNameservers && !strings.HasPrefix(e.Field, FieldPrefix+KeyStubDomains)) {
				t.Fatalf("Parse() error = %v, want *corefile.FieldError naming a key", err)
			}
			return
		}
		for _, s := range c.StubDomains {
			if !corefile.ValidDomain(s.Domain) || len(s.Servers) == 0 {
				t.Fatalf("accepted stub domain %+v", s)
			}
			for _, ap := range s.Servers {
				if !ap.IsValid() || ap.Port() == 0 {
					t.Fatalf("accepted server %v", ap)
				}
			}
		}
		for _, ap := range c.UpstreamNameservers {
			if !ap.IsValid() || ap.Port() == 0 {
				t.Fatalf("accepted upstream %v", ap)
			}
		}
	})
}
