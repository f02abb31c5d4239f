package zones

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/lrpdns/lrpdns/pkg/corefile"
)

// MaxBytes and MaxZones bound the file, as the kube-dns ConfigMap's keys
// are bounded: each zone is a server block with a cache of its own.
const (
	MaxBytes = 64 << 10
	MaxZones = 32
)

// File is the zones file's shape:
//
//	zones:
//	- zone: corp.example
//	  servers: ["10.0.0.10", "10.0.0.11:5353"]
//	  protocol: tcp         # tcp, udp or client (the default)
//	  policy: sequential    # random (the default), round_robin or sequential
//	  maxConcurrent: 100    # default 1000
type File struct {
	Zones []Zone `json:"zones"`
}

// Zone is one server block.
type Zone struct {
	Zone          string   `json:"zone"`
	Servers       []string `json:"servers"`
	Protocol      string   `json:"protocol,omitempty"`
	Policy        string   `json:"policy,omitempty"`
	MaxConcurrent int      `json:"maxConcurrent,omitempty"`
}

// Read reads path; an empty path or a missing file is no zone.
func Read(path string) ([]corefile.StubDomain, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path) //nolint:gosec // path is the operator's --zones-file
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read zones file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read zones file: %w", err)
	}
	if len(b) > MaxBytes {
		return nil, &corefile.FieldError{Field: "zones file " + path, Value: fmt.Sprintf("more than %d bytes", MaxBytes), Want: fmt.Sprintf("at most %d bytes", MaxBytes)}
	}
	return Parse(path, b)
}

// Parse reads a zones file's text; source names it in errors.
func Parse(source string, b []byte) ([]corefile.StubDomain, error) {
	var file File
	if err := yaml.UnmarshalStrict(b, &file); err != nil {
		// "error unmarshaling JSON: while decoding JSON: json: unknown
		// field \"x\"" is read as "unknown field x".
		msg := err.Error()
		if i := strings.LastIndex(msg, "json: "); i >= 0 {
			msg = msg[i+len("json: "):]
		}
		return nil, &corefile.FieldError{Field: "zones file " + source, Value: corefile.Clip(strings.ReplaceAll(msg, `"`, "")),
			Want: `YAML with a list "zones" of {zone, servers, protocol, policy, maxConcurrent}`}
	}
	if len(file.Zones) > MaxZones {
		return nil, &corefile.FieldError{Field: "zones file " + source + " zones", Value: fmt.Sprintf("%d zones", len(file.Zones)), Want: fmt.Sprintf("at most %d", MaxZones)}
	}
	_, _, def := corefile.DefaultForwards()
	var out []corefile.StubDomain
	for i, z := range file.Zones {
		field := fmt.Sprintf("zones file %s zones[%d]", source, i)
		if !corefile.ValidDomain(z.Zone) {
			return nil, &corefile.FieldError{Field: field + ".zone", Value: corefile.Clip(z.Zone), Want: "a DNS domain such as corp.example"}
		}
		sd := corefile.StubDomain{Domain: z.Zone, Forward: def}
		for j, s := range z.Servers {
			ap, err := corefile.ParseServer(s)
			if err != nil {
				return nil, &corefile.FieldError{Field: fmt.Sprintf("%s.servers[%d]", field, j), Value: corefile.Clip(s), Want: "IP, IP:PORT or [IPv6]:PORT"}
			}
			sd.Servers = append(sd.Servers, ap)
		}
		if z.Protocol != "" {
			sd.Forward.Protocol = z.Protocol
		}
		if z.Policy != "" {
			sd.Forward.Policy = z.Policy
		}
		if z.MaxConcurrent != 0 {
			sd.Forward.MaxConcurrent = z.MaxConcurrent
		}
		out = append(out, sd)
	}
	return out, nil
}
