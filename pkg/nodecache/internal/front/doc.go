// Package front owns the cache's DNS sockets and hands every query to the
// running CoreDNS server.
//
// CoreDNS opens its own listeners and offers no hook on them: no cap on TCP
// connections (each holds a goroutine and its buffers, so a client that
// opens thousands holds the memory of the pod's limit), no back-off when
// accept fails at the file-descriptor limit (a core spins), no receive
// buffer size. The front opens the public sockets itself, with those
// limits, and CoreDNS listens on a loopback port inside the pod that
// nothing outside reaches.
//
// The `front` directive, in every server block after `bind`, reads the
// block's address (port and bind hosts) as the public one and moves the
// block to the front's loopback port. At start, the first block's front
// plugin asks its own server a query only it answers and so learns the
// *dnsserver.Server; every public query is then served by that server's
// ServeDNS, exactly as CoreDNS serves its own listeners (UDP queries in
// workers that outlive a query, where dns.Server starts a goroutine for
// each: workers.go). On a reload the new server is learnt before the old
// one stops, so no query meets a server going away; the public sockets
// never close.
package front
