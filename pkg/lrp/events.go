package lrp

// Event reasons.
const (
	ReasonCreated        = "PolicyCreated"
	ReasonRepaired       = "Repaired"
	ReasonRemoved        = "PolicyRemoved"
	ReasonKubeDNSMissing = "KubeDNSServiceMissing"
	ReasonPortMismatch   = "PortMismatch"
	ReasonCRDMissing     = "LocalRedirectPolicyCRDMissing"
	ReasonLRPDisabled    = "LocalRedirectPolicyDisabled"
	ReasonCiliumTooOld   = "CiliumTooOld"
	// ReasonCiliumVersionUnknown: the agent's image has no version tag and
	// no --cilium-version was given.
	ReasonCiliumVersionUnknown = "CiliumVersionUnknown"
	// ReasonCiliumFault: the Cilium release has a known fault that would
	// lose DNS through the redirect (ciliumFaults).
	ReasonCiliumFault = "CiliumKnownFault"
	// ReasonSocketLBPinsClients: Cilium's settings leave a client's kept
	// socket on a cache pod that is gone.
	ReasonSocketLBPinsClients = "SocketLBPinsClients"
	// ReasonWithdrawn: the redirect's ports change; the policy is deleted
	// until every cache pod runs the new template.
	ReasonWithdrawn = "PolicyWithdrawn"
	// ReasonWaiting: no policy yet, and why.
	ReasonWaiting = "WaitingForCache"
	// ReasonWithheld: a Warning, once per wait, when the redirect has
	// waited for the caches longer than Options.WithheldWarning; it names
	// the nodes whose cache pods hold it up.
	ReasonWithheld = "RedirectWithheld"
	// ReasonFailed: a read or write of an object failed; the note carries
	// the API's message.
	ReasonFailed = "ReconcileFailed"
	// ReasonUpstreamAddress: kube-dns-upstream had to be re-created on
	// another address than the running caches use.
	ReasonUpstreamAddress = "UpstreamAddressChanged"
)
