// Package nodecache is the node-cache's logic (its command line is
// cmd/node-cache/app): it turns flags, the
// environment, resolv.conf and the mounted kube-dns ConfigMap into a
// corefile.Config, serves it with embedded CoreDNS, reloads it in-process
// when an input changes, and drains on shutdown.
//
// Readiness is CoreDNS's ready endpoint, which opens only after the DNS
// listeners do and closes first on shutdown, before the lameduck period.
// An input that fails to parse or validate never replaces the running
// configuration; it is logged once and counted.
package nodecache
