// Package loopguard is a CoreDNS plugin that finds forwarding loops the way
// CoreDNS's loop plugin does, and reports them instead of exiting.
//
// At startup each server block sends one HINFO query for a random name in
// its zone to its own listener; the query goes up through forward, and if
// the upstream sends it back to this server (directly or through the
// cluster DNS Service the redirect points here), the guard sees it again.
// Seen three times, the zone has a loop. CoreDNS's plugin then calls
// log.Fatal, which kills the process, and with a cluster-wide ConfigMap
// every node's cache at once. The guard instead answers SERVFAIL for the
// zone from then on (so the loop stops amplifying) and reports the loop on
// the instance's channel, where the node-cache refuses the configuration
// and goes back to its last good one.
//
// Syntax, as CoreDNS's loop:
//
//	loopguard
package loopguard
