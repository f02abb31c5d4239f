// Package coredns embeds CoreDNS as a library: it imports the curated plugin
// set, installs their execution order, and starts, restarts and stops a
// CoreDNS instance from an in-memory Corefile.
//
// It never reads configuration from disk and never handles signals; it does
// not call coremain.Run. CoreDNS's directive list and plugin registry are
// process-wide, so Install must run before the first Start.
package coredns
