// Package soak runs hostile mixes against the real node-cache binary in a
// memory cgroup with the DaemonSet's limit (or, without cgroups, with
// GOMEMLIMIT and an RSS check) while a good client keeps asking: the
// process must not exit, its memory must stay under the limit, and the
// good client must lose no query except under pure CPU floods, where its
// failures are counted. `make soak` runs it (hack/soak.sh).
//
// It is test support only; nothing in a shipped binary imports it.
package soak
