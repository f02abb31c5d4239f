package judge

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The kinds of a failed query, as every client reports them.
const (
	// KindTimeout: no answer within the client's timeout.
	KindTimeout = "timeout"
	// KindRefused: the socket was refused (ECONNREFUSED, EHOSTUNREACH): an
	// ICMP error, or socket load balancing with no backend at connect().
	KindRefused = "refused"
	// KindServfail: an answer with rcode SERVFAIL.
	KindServfail = "servfail"
	// KindDNSRefused: an answer with rcode REFUSED.
	KindDNSRefused = "dns-refused"
	// KindWrong: an answer, but not the one the name must get.
	KindWrong = "wrong"
	// KindError: anything else (the library's own error).
	KindError = "error"
)

// Failure is one failed query as a client reports it.
type Failure struct {
	// At is when the query was sent.
	At     time.Time `json:"at"`
	Name   string    `json:"name"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

func (f Failure) String() string {
	return fmt.Sprintf("%s %s %s (%s)", f.At.UTC().Format("15:04:05.000"), f.Name, f.Kind, f.Detail)
}

// Report is what every client prints when it ends: `lrpdns probe`,
// resolve.js (Node.js, c-ares) and getent.sh (glibc).
type Report struct {
	Server   string `json:"server,omitempty"`
	Client   string `json:"client"`
	Sent     int    `json:"sent"`
	Answered int    `json:"answered"`
	Failed   int    `json:"failed"`
	// Wrong counts the failures that were answers, but not the expected one.
	Wrong int `json:"wrong"`
	// Resent counts queries sent again on a new socket because the kept one
	// reported an error; ResentAfter says which errors.
	Resent      int            `json:"resent,omitempty"`
	ResentAfter map[string]int `json:"resentAfter,omitempty"`
	// Slow counts answers that took a second or more: a library's retry.
	Slow int `json:"slow,omitempty"`
	// Failures lists the failed queries, at most ListCap of them.
	Failures []Failure      `json:"failures,omitempty"`
	Answers  map[string]int `json:"answers,omitempty"`
	// Started is when the first query was sent; PerSecond counts the
	// queries sent in each second from then.
	Started   time.Time `json:"started"`
	PerSecond []int     `json:"perSecond"`
}

// ListCap is how many failures a client lists; more cannot be judged one by
// one.
const ListCap = 50

// freshCluster is a never-seen cluster name: a pod name CoreDNS answers
// with the address it spells (10-R-HI-LO.default.pod.cluster.local), which
// no cache can hold.
var freshCluster = regexp.MustCompile(`^[0-9]+-[0-9]+-[0-9]+-[0-9]+\.[a-z0-9-]+\.pod\.cluster\.local\.?$`)

// FreshClusterName reports whether name is a never-seen cluster name.
func FreshClusterName(name string) bool { return freshCluster.MatchString(strings.ToLower(name)) }
