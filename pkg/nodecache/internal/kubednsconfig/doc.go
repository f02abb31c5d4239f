// Package kubednsconfig parses the kube-dns ConfigMap as mounted into the
// node-cache: the keys stubDomains (a JSON map of domain to server list) and
// upstreamNameservers (a JSON list of servers), each a file in a directory.
//
// It only reads and validates; it never watches or renders. Every error
// names the key and the value that was refused and what would be accepted.
package kubednsconfig
