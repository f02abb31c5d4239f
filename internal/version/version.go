// Package version holds the build's version, stamped by the linker:
// -X github.com/lrpdns/lrpdns/internal/version.Version=v1.2.3
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is the release this binary was built from.
var Version = "dev"

// CoreDNS is the CoreDNS release built into this binary, from its build
// information, or "" when it has none (lrpdns embeds no CoreDNS).
func CoreDNS() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range info.Deps {
		if m.Path == "github.com/coredns/coredns" {
			return m.Version
		}
	}
	return ""
}

// String is the version line a binary prints for --version: its name, the
// release, the CoreDNS release it embeds, if any, and the Go toolchain.
func String(name string) string {
	s := name + " " + Version + " ("
	if c := CoreDNS(); c != "" {
		s += "CoreDNS " + c + ", "
	}
	return s + runtime.Version() + ")"
}
