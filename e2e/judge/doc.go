// Package judge is the e2e suite's pass/fail logic, as pure functions over
// what the suite observed: clients' reports, the cluster's timings, Hubble's
// flows, the node's view of a process. The suite (build tag e2e) gathers the
// observations on a real cluster; every rule here runs in `go test ./...`
// with cases a broken product would produce, each of which must fail.
//
// It never talks to a cluster and never sleeps.
package judge
