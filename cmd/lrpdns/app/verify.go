package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lrpdns/lrpdns/pkg/lrp"
	"github.com/lrpdns/lrpdns/pkg/verify"
)

// ErrVerifyFailed is returned when a required check did not pass.
var ErrVerifyFailed = errors.New("verify: the node-local DNS path is not proven")

type verifyFlags struct {
	server, file, kubeconfig, output, resolvers, namespace, coreDNSPorts string
	ipVersion                                                            string
	relayNamespace, relayService                                         string
	since                                                                time.Duration
	names                                                                verify.Names
}

// runVerify proves the path from Hubble flows. With a cluster (--kubeconfig,
// $KUBECONFIG or in-cluster) it reads the policy, the cache pods' selector
// and port and CoreDNS's selector and target ports from the cluster, and
// without --hubble-server reaches Hubble Relay through a port-forward.
// Flags given on the command line win over what is read.
// redirectSettle is how long after a redirect policy is created verify
// expects Cilium to have it in every node's datapath.
const redirectSettle = 5 * time.Second

func runVerify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lrpdns verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := verify.DefaultConfig()
	f := verifyFlags{names: verify.DefaultNames()}
	fs.StringVar(&f.server, "hubble-server", "", "Hubble Relay (or agent) `ADDR`, e.g. localhost:4245 or unix:///var/run/cilium/hubble.sock; default: a port-forward to Hubble Relay")
	fs.StringVar(&f.file, "flows", "", "`FILE` of `hubble observe -o jsonpb` lines; - for stdin")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `FILE` to read the policy, the cache and kube-dns from; default: $KUBECONFIG or in-cluster (not with --flows)")
	fs.DurationVar(&f.since, "since", 5*time.Minute, "window: flows from the last DURATION (with --flows: before the newest flow; 0 keeps all)")
	fs.StringVar(&f.output, "o", "text", "output: text or json")
	fs.StringVar(&f.names.Namespace, "policy-namespace", f.names.Namespace, "namespace of the CiliumLocalRedirectPolicy, the cache DaemonSet and kube-dns")
	fs.StringVar(&f.names.Policy, "policy-name", f.names.Policy, "the CiliumLocalRedirectPolicy")
	fs.StringVar(&f.names.DaemonSet, "daemonset", f.names.DaemonSet, "the cache DaemonSet, read when there is no policy")
	fs.StringVar(&f.names.KubeDNSService, "kube-dns-service", f.names.KubeDNSService, "the cluster DNS Service, read when there is no policy")
	fs.StringVar(&f.relayNamespace, "hubble-relay-namespace", "kube-system", "namespace of the hubble-relay Service")
	fs.StringVar(&f.relayService, "hubble-relay-service", "hubble-relay", "the Hubble Relay Service to port-forward to")
	fs.StringVar(&f.namespace, "namespace", "", "namespace of the cache and CoreDNS pods (sets both --cache-namespace and --kube-dns-namespace)")
	fs.StringVar(&c.CacheNamespace, "cache-namespace", c.CacheNamespace, "namespace of the cache pods")
	fs.StringVar(&c.KubeDNSNamespace, "kube-dns-namespace", c.KubeDNSNamespace, "namespace of the CoreDNS pods")
	fs.StringVar(&c.CacheSelector, "cache-selector", c.CacheSelector, "Hubble label selector of the cache pods")
	fs.StringVar(&c.KubeDNSSelector, "kube-dns-selector", c.KubeDNSSelector, "Hubble label selector of the CoreDNS pods")
	fs.IntVar(&c.CachePort, "cache-port", c.CachePort, "the cache pods' DNS port")
	fs.StringVar(&f.coreDNSPorts, "kube-dns-ports", "53", "the CoreDNS pods' DNS `PORT[,PORT]` (kube-dns's target ports)")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "the cluster's DNS domain")
	fs.StringVar(&f.resolvers, "node-resolvers", "", "the node's resolvers `IP[,IP]`; default: any destination that is not a pod")
	fs.StringVar(&f.ipVersion, "client-ip-version", "", "judge only clients' queries over IP `VERSION` 4 or 6 (a dual-stack cluster's IPv6 clients); default: both")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("verify: unexpected argument %q", fs.Arg(0))
	}
	if f.server != "" && f.file != "" {
		return errors.New("verify: give at most one of --hubble-server and --flows")
	}
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("verify: invalid -o %q: want text or json", f.output)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	var cfg *rest.Config
	if f.file == "" || f.kubeconfig != "" {
		var err error
		if cfg, err = restConfig(f.kubeconfig); err != nil {
			if f.server == "" && f.file == "" {
				return fmt.Errorf("verify: give --flows or --hubble-server, or a cluster to read them from: %w", err)
			}
			cfg = nil // no cluster: flags and defaults only
		}
	}
	if cfg != nil {
		discovered, note, err := discover(ctx, cfg, f.names)
		if err != nil {
			return err
		}
		if note != "" {
			fmt.Fprintln(stderr, "verify:", note)
		}
		// Flags on the command line win over what the cluster says: parse
		// them again, over it (the flags are bound to c's fields).
		c = discovered
		if err := fs.Parse(args); err != nil {
			return err
		}
	}
	if err := f.apply(&c, set); err != nil {
		return err
	}
	// Flows from before the redirect existed (an install a minute ago, a
	// port change that re-created it) show the path without it: the window
	// starts once Cilium has had it for a moment.
	effective := time.Time{}
	if !c.RedirectCreated.IsZero() {
		effective = c.RedirectCreated.Add(redirectSettle)
		if age := time.Since(effective); f.file == "" && age < f.since {
			f.since = max(age, time.Second)
			fmt.Fprintf(stderr, "verify: the redirect was created %v ago: judging the flows of the last %v, since it took effect\n",
				time.Since(c.RedirectCreated).Round(time.Second), f.since.Round(time.Second))
		}
	}

	var flows []*observerpb.GetFlowsResponse
	var err error
	switch {
	case f.file != "":
		r := stdin
		if f.file != "-" {
			file, ferr := os.Open(f.file)
			if ferr != nil {
				return fmt.Errorf("verify: %w", ferr)
			}
			defer file.Close()
			r = file
		}
		flows, err = verify.ReadFlows(r)
		flows = verify.Window(flows, f.since)
	case f.server != "":
		flows, err = verify.FromServer(ctx, f.server, f.since, c)
	default:
		addr, stop, ferr := forwardToService(ctx, cfg, f.relayNamespace, f.relayService, stderr)
		if ferr != nil {
			return fmt.Errorf("verify: failed to reach Hubble Relay (give --hubble-server to skip the port-forward): %w", ferr)
		}
		defer stop()
		flows, err = verify.FromServer(ctx, addr, f.since, c)
	}
	// A record with a hole in it is judged and shown, and fails whatever
	// its verdict: a node whose flows went missing could look clean.
	var incomplete *verify.Incomplete
	if errors.As(err, &incomplete) {
		err = nil
	}
	if err != nil {
		return err
	}
	// A recording made before the policy existed (archived flows judged
	// against today's cluster) is judged whole.
	if !effective.IsZero() && verify.Newest(flows).After(effective) {
		kept := verify.Since(flows, effective)
		if n := len(flows) - len(kept); n > 0 {
			fmt.Fprintf(stderr, "verify: %d flows from before the redirect took effect (%s) left out\n", n, effective.UTC().Format(time.RFC3339))
		}
		flows = kept
	}
	rep, err := verify.Evaluate(ctx, c, flows)
	if err != nil {
		return err
	}
	if f.output == "json" {
		err = verify.WriteJSON(stdout, rep)
	} else {
		err = verify.WriteText(stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Passed() {
		return errors.Join(ErrVerifyFailed, incompleteErr(incomplete))
	}
	return incompleteErr(incomplete)
}

// incompleteErr fails a verdict on an incomplete record (nil: complete).
func incompleteErr(inc *verify.Incomplete) error {
	if inc == nil {
		return nil
	}
	return fmt.Errorf("verify: %w", inc)
}

// apply sets what needs parsing: --namespace, --kube-dns-ports and
// --node-resolvers.
func (f *verifyFlags) apply(c *verify.Config, set map[string]bool) error {
	if f.namespace != "" {
		c.CacheNamespace, c.KubeDNSNamespace = f.namespace, f.namespace
	}
	if set["kube-dns-ports"] {
		c.KubeDNSPorts = nil
		for _, s := range strings.Split(f.coreDNSPorts, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || p < 1 || p > 65535 {
				return fmt.Errorf("verify: invalid --kube-dns-ports entry %q: want ports from 1 to 65535 separated by commas", s)
			}
			c.KubeDNSPorts = append(c.KubeDNSPorts, p)
		}
	}
	for _, s := range strings.Split(f.resolvers, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("verify: invalid --node-resolvers entry %q: want IP addresses separated by commas", s)
		}
		c.NodeResolvers = append(c.NodeResolvers, a)
	}
	switch f.ipVersion {
	case "":
	case "4":
		c.ClientIPVersion = flowpb.IPVersion_IPv4
	case "6":
		c.ClientIPVersion = flowpb.IPVersion_IPv6
	default:
		return fmt.Errorf("verify: invalid --client-ip-version %q: want 4 or 6", f.ipVersion)
	}
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

func discover(ctx context.Context, cfg *rest.Config, n verify.Names) (verify.Config, string, error) {
	scheme, err := lrp.Scheme()
	if err != nil {
		return verify.Config{}, "", err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return verify.Config{}, "", fmt.Errorf("verify: failed to create a client: %w", err)
	}
	c, note, err := verify.Discover(ctx, cl, n)
	if err != nil {
		return verify.Config{}, "", fmt.Errorf("verify: %w", err)
	}
	return c, note, nil
}
