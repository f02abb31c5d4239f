// Package corefile owns the node-cache's configuration: a typed Config,
// its validation, and its deterministic rendering to a CoreDNS Corefile.
//
// It never reads files, flags or the environment and never starts a server;
// callers build a Config from their inputs and hand the rendered text to
// CoreDNS. Rendering the same Config always yields the same bytes, so the
// text's hash identifies the active configuration.
package corefile
