// Package hot answers a repeated query with the answer CoreDNS's cache
// plugin gave it last, without CoreDNS: the bytes the chain wrote, kept
// ready to send, with the client's ID and the TTLs counted down.
//
// What it learns is only what the cache plugin answered itself: the `hot`
// directive, right after `cache` in a block, marks every query the cache
// passes on (a miss, a refresh, a prefetch), and an answer written by a
// query that never reached the mark came from the cache. Answers are keyed
// by the query's exact bytes after the ID and by transport, so everything
// the chain's answer depends on (name and its letter case, type, class,
// flags, EDNS buffer size, DO bit, options) is in the key; a query in
// another letter case is a different key, answered by the chain.
//
// It must never answer what the cache plugin would not: it stops answering
// a name while the cache's prefetch could still trigger (HandBack seconds
// of TTL left), before the name has had Warm cache hits (so the cache's
// prefetch sees the hits it counts), and every Lifetime (so the cache keeps
// counting). A stale answer is never learnt: in serve_stale's verify mode
// the cache passes the query on (to verify) before it answers stale, and
// in immediate mode, where that happens in the background, an answer with
// the stale TTL (StaleTTL) is not learnt. A reload starts an empty store.
package hot
