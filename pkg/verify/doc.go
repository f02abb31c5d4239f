// Package verify proves the node-local DNS path from Hubble flows: clients
// reach the cache pod, the cache reaches CoreDNS over TCP and the node's
// resolvers for the rest, and nobody bypasses the cache.
//
// Every check is a set of Hubble FlowFilters evaluated by Cilium's own filter
// code (pkg/hubble/filters), the code the agent and Relay run for `hubble
// observe`, never hand-written matching. It reads flows from a file of
// `hubble observe -o jsonpb` lines or from Hubble Relay; it never writes to
// the cluster.
package verify
