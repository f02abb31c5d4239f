package cli

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

	observerpb "github.com/cilium/cilium/api/v1/observer"

	"github.com/lrpdns/lrpdns/pkg/verify"
)

// ErrVerifyFailed is returned when a required check did not pass.
var ErrVerifyFailed = errors.New("verify: the node-local DNS path is not proven")

func runVerify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lrpdns verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := verify.DefaultConfig()
	server := fs.String("hubble-server", "", "Hubble Relay (or agent) `ADDR`, e.g. localhost:4245 or unix:///var/run/cilium/hubble.sock")
	file := fs.String("flows", "", "`FILE` of `hubble observe -o jsonpb` lines; - for stdin")
	since := fs.Duration("since", 5*time.Minute, "window: flows from the last DURATION (with --flows: before the newest flow; 0 keeps all)")
	output := fs.String("o", "text", "output: text or json")
	namespace := fs.String("namespace", "", "namespace of the cache and CoreDNS pods (sets both --cache-namespace and --kube-dns-namespace)")
	fs.StringVar(&c.CacheNamespace, "cache-namespace", c.CacheNamespace, "namespace of the cache pods")
	fs.StringVar(&c.KubeDNSNamespace, "kube-dns-namespace", c.KubeDNSNamespace, "namespace of the CoreDNS pods")
	fs.StringVar(&c.CacheSelector, "cache-selector", c.CacheSelector, "Hubble label selector of the cache pods")
	fs.StringVar(&c.KubeDNSSelector, "kube-dns-selector", c.KubeDNSSelector, "Hubble label selector of the CoreDNS pods")
	fs.IntVar(&c.CachePort, "cache-port", c.CachePort, "the cache pods' DNS port")
	coreDNSPorts := fs.String("kube-dns-ports", "53", "the CoreDNS pods' DNS `PORT[,PORT]` (kube-dns's target ports)")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "the cluster's DNS domain")
	resolvers := fs.String("node-resolvers", "", "the node's resolvers `IP[,IP]`; default: any destination that is not a pod")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *namespace != "" {
		c.CacheNamespace, c.KubeDNSNamespace = *namespace, *namespace
	}
	c.KubeDNSPorts = nil
	for _, s := range strings.Split(*coreDNSPorts, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("verify: invalid --kube-dns-ports entry %q: want ports from 1 to 65535 separated by commas", s)
		}
		c.KubeDNSPorts = append(c.KubeDNSPorts, p)
	}
	if (*server == "") == (*file == "") {
		return errors.New("verify: give exactly one of --hubble-server and --flows")
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("verify: invalid -o %q: want text or json", *output)
	}
	for _, s := range strings.Split(*resolvers, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("verify: invalid --node-resolvers entry %q: want IP addresses separated by commas", s)
		}
		c.NodeResolvers = append(c.NodeResolvers, a)
	}

	var flows []*observerpb.GetFlowsResponse
	var err error
	if *server != "" {
		flows, err = verify.FromServer(ctx, *server, *since, c)
	} else {
		r := stdin
		if *file != "-" {
			f, ferr := os.Open(*file)
			if ferr != nil {
				return fmt.Errorf("verify: %w", ferr)
			}
			defer f.Close()
			r = f
		}
		flows, err = verify.ReadFlows(r)
		flows = verify.Window(flows, *since)
	}
	if err != nil {
		return err
	}
	rep, err := verify.Evaluate(ctx, c, flows)
	if err != nil {
		return err
	}
	if *output == "json" {
		err = verify.WriteJSON(stdout, rep)
	} else {
		err = verify.WriteText(stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Passed() {
		return ErrVerifyFailed
	}
	return nil
}
