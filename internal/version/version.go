// Package version holds the build's version, stamped by the linker:
// -X github.com/lrpdns/lrpdns/internal/version.Version=v1.2.3
package version

// Version is the release this binary was built from.
var Version = "dev"
