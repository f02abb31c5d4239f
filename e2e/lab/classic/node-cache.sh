#!/usr/bin/env bash
# Stands in, in the lab, for registry.k8s.io/dns/k8s-dns-node-cache, the
# classic NodeLocal DNSCache's image, which cannot be fetched here. It does
# what that node-cache does in a hostNetwork pod: a dummy interface
# "nodelocaldns" holding the -localip addresses, iptables rules that let DNS
# to and from them skip conntrack, and CoreDNS serving a Corefile made from
# the ConfigMap's Corefile.base (__PILLAR__CLUSTER__DNS__: the -upstreamsvc
# Service's ClusterIP from its service-link variable;
# __PILLAR__UPSTREAM__SERVERS__: the node's nameservers). On SIGTERM it
# removes the rules and the interface, as node-cache does. On a kernel
# without the dummy driver (CONFIG_DUMMY unset, as on the lab's host) the
# addresses go on the node's loopback instead: local addresses of the node
# either way, which is all a pod's packet to them meets. hack/e2e-lab.sh
# writes it into the lab with the CoreDNS binary's path for @COREDNS@ and,
# for @XTABLES@, the multi-call binary iptables stands for: a lab container
# has an /etc of its own, without /etc/alternatives, and a /tmp of its own,
# so neither a link through /etc nor one in a checkout under /tmp resolves
# there; the binary, called with the applet's name first, does.
set -o errexit -o nounset -o pipefail
export PATH=$PATH:/usr/sbin:/sbin
COREDNS=@COREDNS@
iptables() { @XTABLES@ iptables "$@"; }
localip="" conf="" upstreamsvc=""
while [[ $# -gt 0 ]]; do
  case $1 in
    -localip) localip=$2; shift 2 ;;
    -conf) conf=$2; shift 2 ;;
    -upstreamsvc) upstreamsvc=$2; shift 2 ;;
    *) shift ;;
  esac
done
IFS=, read -ra ips <<< "$localip"
var="$(tr 'a-z-' 'A-Z_' <<< "$upstreamsvc")_SERVICE_HOST"
upstream=${!var:?no $var: the -upstreamsvc Service did not exist when the pod started}
servers=""
while read -r key value _; do
  if [[ $key == nameserver ]]; then servers+="${servers:+ }$value"; fi
done < /etc/resolv.conf
sed -e "s/__PILLAR__CLUSTER__DNS__/$upstream/g" -e "s/__PILLAR__UPSTREAM__SERVERS__/$servers/g" \
  /etc/coredns/Corefile.base > "$conf"

rules() { # -A or -D
  local ip proto
  for ip in "${ips[@]}"; do
    for proto in udp tcp; do
      iptables -w -t raw "$1" PREROUTING -p "$proto" -d "$ip" --dport 53 -j NOTRACK
      iptables -w -t raw "$1" OUTPUT -p "$proto" -s "$ip" --sport 53 -j NOTRACK
      iptables -w -t raw "$1" OUTPUT -p "$proto" -d "$ip" --dport 53 -j NOTRACK
      iptables -w "$1" INPUT -p "$proto" -d "$ip" --dport 53 -j ACCEPT
      iptables -w "$1" OUTPUT -p "$proto" -s "$ip" --sport 53 -j ACCEPT
    done
    iptables -w -t raw "$1" OUTPUT -p tcp -d "$ip" --dport 8080 -j NOTRACK
    iptables -w -t raw "$1" OUTPUT -p tcp -s "$ip" --sport 8080 -j NOTRACK
  done
}
teardown() {
  rules -D 2>/dev/null || true
  ip link del nodelocaldns 2>/dev/null || true
  local ip
  for ip in "${ips[@]}"; do ip addr del "$ip/32" dev lo 2>/dev/null || true; done
}
teardown
dev=nodelocaldns
if ! ip link add nodelocaldns type dummy; then
  dev=lo
  echo "node-cache (lab): no dummy interfaces on this kernel; the addresses go on lo"
fi
for ip in "${ips[@]}"; do ip addr add "$ip/32" dev "$dev"; done
ip link set "$dev" up
rules -A
echo "node-cache (lab): $dev up with ${ips[*]}; cluster names to $upstream, the rest to $servers"

"$COREDNS" -conf "$conf" &
coredns=$!
trap 'kill -TERM $coredns 2>/dev/null; wait $coredns; teardown; exit 0' TERM INT
wait $coredns
teardown
