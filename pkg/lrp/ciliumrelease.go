package lrp

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/version"
)

// What lrpdns knows of Cilium releases' local redirect policies: which
// releases the lab measured (LAB_CILIUM=vX.Y.Z LAB_SUITE=fallback make
// e2e-lab; docs/lab.md#cilium-releases) and which faults Cilium's issues
// report. The controller redirects only where nothing here would lose DNS.

// ciliumFloor is the oldest release lrpdns redirects on. Older releases
// have another local redirect implementation, which the lab has not
// measured.
const ciliumFloor = "1.18.0"

// CiliumBehaviour is what a Cilium release does with lrpdns's redirect, in
// each way a release could lose DNS through it.
type CiliumBehaviour struct {
	// FallsBack: on a node without a ready cache pod, DNS to kube-dns goes
	// to CoreDNS as if there were no policy.
	FallsBack bool
	// WaitsForReady: a cache pod gets DNS only while it is Ready: neither
	// while it starts nor once its readiness fails.
	WaitsForReady bool
	// AddressRedirect: a policy with an addressMatcher (link-local cluster
	// DNS) sends the address's DNS to the node's ready cache pod.
	AddressRedirect bool
}

// behaviour names one CiliumBehaviour field.
type behaviour int

const (
	fallsBack behaviour = iota
	waitsForReady
	addressRedirect
)

// ciliumFault is a range of releases, [from, before), that lacks one
// behaviour.
type ciliumFault struct {
	from, before string
	lacks        behaviour
	issue        string
	what         string
}

// ciliumFaults are the known faults, from Cilium's issues and the lab.
var ciliumFaults = []ciliumFault{
	{from: "1.18.0", before: "1.18.2", lacks: fallsBack, issue: "cilium/cilium#41450",
		what: "a node without a ready cache pod drops DNS to kube-dns instead of sending it to CoreDNS"},
	{from: "1.18.0", before: "1.18.6", lacks: waitsForReady, issue: "cilium/cilium#43080",
		what: "a cache pod gets DNS before it is Ready, so DNS is lost while a cache starts (every rollout)"},
}

// faultsOf are the faults of release v.
func faultsOf(v *version.Version) []ciliumFault {
	var out []ciliumFault
	for _, f := range ciliumFaults {
		if !v.LessThan(version.MustParseSemantic(f.from)) && v.LessThan(version.MustParseSemantic(f.before)) {
			out = append(out, f)
		}
	}
	return out
}

// ExpectedCiliumBehaviour is what lrpdns expects of release v, at or above
// the floor.
func ExpectedCiliumBehaviour(v *version.Version) CiliumBehaviour {
	b := CiliumBehaviour{FallsBack: true, WaitsForReady: true, AddressRedirect: true}
	for _, f := range faultsOf(v) {
		switch f.lacks {
		case fallsBack:
			b.FallsBack = false
		case waitsForReady:
			b.WaitsForReady = false
		case addressRedirect:
			b.AddressRedirect = false
		}
	}
	return b
}

// ciliumVerdict is what the controller does on a release.
type ciliumVerdict struct {
	// redirect: kube-dns's policy may be created.
	redirect bool
	// addresses: address policies may be created.
	addresses bool
	// why says what is wrong, naming the release, the issue and the first
	// release without it; "" when nothing is.
	why string
}

// judgeCilium decides from release v what may be redirected.
func judgeCilium(v *version.Version) ciliumVerdict {
	if v.LessThan(version.MustParseSemantic(ciliumFloor)) {
		return ciliumVerdict{why: fmt.Sprintf("Cilium %s is older than %s, the oldest release lrpdns is measured on: no redirect is created; upgrade Cilium", v, ciliumFloor)}
	}
	verdict := ciliumVerdict{redirect: true, addresses: true}
	var whys []string
	for _, f := range faultsOf(v) {
		if f.lacks == addressRedirect {
			verdict.addresses = false
		} else {
			verdict.redirect, verdict.addresses = false, false
		}
		whys = append(whys, fmt.Sprintf("%s (%s, fixed in %s)", f.what, f.issue, f.before))
	}
	if len(whys) > 0 {
		what := "no redirect is created"
		if verdict.redirect {
			what = "no address policy is created"
		}
		verdict.why = fmt.Sprintf("Cilium %s: %s: %s; upgrade Cilium", v, strings.Join(whys, "; "), what)
	}
	return verdict
}

// AgentVersion is the Cilium release of its DaemonSet's agent image
// (quay.io/cilium/cilium:v1.20.2@sha256:...).
func AgentVersion(ds *appsv1.DaemonSet) (*version.Version, bool) {
	return imageVersion(agentImage(ds))
}
