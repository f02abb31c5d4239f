package e2e

import "sync/atomic"

// runs numbers the clients' runs: each asks never-seen names of its own
// (10-RUN-HI-LO, rRUN-N), not ones another client asked a moment before
// and the cache still holds, SERVFAIL included (CoreDNS's cache keeps one
// 5 s): with random numbers, two of a scenario's six clients share one
// about one scenario in 17.
var runs atomic.Uint32

// nextRun is the next run number, 1 to 254 and round again.
func nextRun() int { return int((runs.Add(1)-1)%254) + 1 }
