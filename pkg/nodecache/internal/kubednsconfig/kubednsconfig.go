package kubednsconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lrpdns/lrpdns/pkg/corefile"
)

// ConfigMap keys the node-cache reads.
const (
	KeyStubDomains         = "stubDomains"
	KeyUpstreamNameservers = "upstreamNameservers"
)

// maxServers bounds a server list, as kube-dns does for upstreamNameservers.
const maxServers = 3

// Bounds on what a ConfigMap may ask for: each stub domain is a server block
// with its own cache, and the ConfigMap is the cluster's, read by every
// cache at once.
const (
	// MaxValueBytes bounds one key's value.
	MaxValueBytes = 64 << 10
	// MaxStubDomains bounds stubDomains.
	MaxStubDomains = 32
)

// Config is what the kube-dns ConfigMap says.
type Config struct {
	StubDomains []corefile.StubDomain
	// UpstreamNameservers replace the node's resolvers when not empty.
	UpstreamNameservers []netip.AddrPort
}

// keyError is a refused key or value, as every refused input is reported:
// the field (here the ConfigMap key), the value and what is accepted.
func keyError(key, value, want string) *corefile.FieldError {
	return &corefile.FieldError{Field: FieldPrefix + key, Value: value, Want: want}
}

// FieldPrefix starts the Field of every error about a key.
const FieldPrefix = "kube-dns ConfigMap key "

// ReadDir reads the keys from a mounted ConfigMap directory. A missing
// directory or key is an empty configuration, not an error.
func ReadDir(dir string) (Config, error) {
	read := func(key string) ([]byte, error) {
		f, err := os.Open(filepath.Join(dir, key)) //nolint:gosec // dir is the operator's --kube-dns-config-dir
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read kube-dns ConfigMap key %s: %w", key, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, MaxValueBytes+1))
		if err != nil {
			return nil, fmt.Errorf("failed to read kube-dns ConfigMap key %s: %w", key, err)
		}
		if len(b) > MaxValueBytes {
			size := "more"
			if st, err := f.Stat(); err == nil {
				size = fmt.Sprint(st.Size())
			}
			return nil, keyError(key, corefile.Clip(string(b)), fmt.Sprintf("at most %d bytes (it has %s)", MaxValueBytes, size))
		}
		return b, nil
	}
	stubs, err := read(KeyStubDomains)
	if err != nil {
		return Config{}, err
	}
	upstreams, err := read(KeyUpstreamNameservers)
	if err != nil {
		return Config{}, err
	}
	return Parse(stubs, upstreams)
}

// Parse parses the two keys' values; empty values are allowed.
func Parse(stubDomains, upstreamNameservers []byte) (Config, error) {
	var c Config
	if s := strings.TrimSpace(string(stubDomains)); s != "" {
		var raw map[string][]string
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return Config{}, keyError(KeyStubDomains, corefile.Clip(s), `a JSON object of domain to server list, e.g. {"acme.local": ["10.0.0.10"]}`)
		}
		if len(raw) > MaxStubDomains {
			return Config{}, keyError(KeyStubDomains, corefile.Clip(s), fmt.Sprintf("at most %d stub domains (it has %d)", MaxStubDomains, len(raw)))
		}
		for domain, list := range raw {
			if !corefile.ValidDomain(domain) {
				return Config{}, keyError(KeyStubDomains, corefile.Clip(domain), "a DNS domain such as acme.local")
			}
			servers, err := parseServers(fmt.Sprintf("%s[%q]", KeyStubDomains, domain), list)
			if err != nil {
				return Config{}, err
			}
			c.StubDomains = append(c.StubDomains, corefile.StubDomain{Domain: domain, Servers: servers})
		}
		slices.SortFunc(c.StubDomains, func(a, b corefile.StubDomain) int { return strings.Compare(a.Domain, b.Domain) })
	}
	if s := strings.TrimSpace(string(upstreamNameservers)); s != "" {
		var raw []string
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return Config{}, keyError(KeyUpstreamNameservers, corefile.Clip(s), `a JSON list of servers, e.g. ["1.1.1.1", "[2606:4700::1111]:53"]`)
		}
		servers, err := parseServers(KeyUpstreamNameservers, raw)
		if err != nil {
			return Config{}, err
		}
		c.UpstreamNameservers = servers
	}
	return c, nil
}

func parseServers(key string, list []string) ([]netip.AddrPort, error) {
	if len(list) == 0 || len(list) > maxServers {
		return nil, keyError(corefile.Clip(key), corefile.Clip(fmt.Sprint(list)), fmt.Sprintf("1 to %d servers", maxServers))
	}
	out := make([]netip.AddrPort, 0, len(list))
	for _, s := range list {
		ap, err := corefile.ParseServer(s)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
			return nil, keyError(corefile.Clip(key), corefile.Clip(s), "an IP address, IP:PORT or [IPv6]:PORT (hostnames are not resolved)")
		}
		out = append(out, ap)
	}
	return out, nil
}
