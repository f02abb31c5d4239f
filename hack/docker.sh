#!/usr/bin/env bash
# A Docker engine for make e2e where none answers: Debian's docker.io,
# dockerd started in a network namespace of its own (its bridges, kind's
# network, published ports and NAT all live there; nothing is attached to
# the root network namespace), its images kept outside the clone so a warm
# run builds nothing.
#
#   hack/docker.sh up     # start it (installs docker.io as root if missing); prints the env
#   hack/docker.sh env    # DOCKER_HOST= and DOCKER_NETNS= lines for the running one
#   hack/docker.sh down   # stop it and delete its namespace (images stay)
#   hack/docker.sh dns    # the address containers' DNS is forwarded to (dockerd --dns):
#                         # docker0's, in the namespace; make e2e runs the node resolver there
#
# Commands that reach what runs in Docker's network (kubectl to kind's API
# server on 127.0.0.1, port-forwards) run in the namespace:
#   nsenter --net=/run/netns/$DOCKER_NETNS kubectl ...
# (not ip netns exec, which remounts /sys and hides the cgroup mounts
# dockerd and kind need).
#
# Where the machine's capability bounding set lacks a capability (here:
# CAP_SYS_RESOURCE), runc refuses privileged containers; dockerd then runs
# containers through runc-capfilter (e2e/kind/cmd/runc-capfilter), which
# takes such capabilities out of each container's spec first.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"

NS=${LRPDNS_DOCKER_NETNS:-lrpdns-docker}
RUN=/run/$NS
SOCK=$RUN/docker.sock
DATA=$LRPDNS_CACHE/docker
# docker0's address, fixed: containers' external DNS goes there.
BRIDGE_IP=172.17.0.1
log() { echo "docker: $*" >&2; }

# The engine's own client first on PATH: Debian's docker 20.10 builds with
# BuildKit built in, where a newer client would want the buildx plugin.
env_lines() {
  echo "DOCKER_HOST=unix://$SOCK"; echo "DOCKER_NETNS=$NS"
  if [[ -x /usr/bin/docker ]]; then
    mkdir -p "$RUN/bin"; ln -sf /usr/bin/docker "$RUN/bin/docker"
    echo "PATH=$RUN/bin:$PATH"
  fi
}
answers() { DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; }

up() {
  if answers; then env_lines; return; fi
  [[ $EUID -eq 0 ]] || { log "no Docker engine answers and this is not root: start one (DOCKER_HOST), or run as root to have this script start Debian's docker.io in a network namespace of its own"; return 1; }
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v nsenter >/dev/null || need+=(util-linux)
  command -v iptables >/dev/null || need+=(iptables)
  if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  mkdir -p "$RUN" "$DATA"
  if [[ ! -e /run/netns/$NS ]]; then
    ip netns add "$NS"
    ip -n "$NS" link set lo up
  fi
  local runtime=()
  (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -o "$RUN/runc-capfilter" ./e2e/kind/cmd/runc-capfilter)
  local missing; missing=$("$RUN/runc-capfilter" --missing)
  if [[ -n "$missing" ]]; then
    runtime=(--add-runtime "capfilter=$RUN/runc-capfilter" --default-runtime capfilter)
    log "this machine's capability bounding set lacks $missing: containers run through runc-capfilter"
  fi
  log "starting dockerd in network namespace $NS (data root $DATA)"
  nsenter --net="/run/netns/$NS" dockerd --data-root "$DATA" --exec-root "$RUN/exec" \
    --pidfile "$RUN/dockerd.pid" -H "unix://$SOCK" --experimental --ip6tables \
    --bip "$BRIDGE_IP/16" --dns "$BRIDGE_IP" \
    "${runtime[@]}" > "$RUN/dockerd.log" 2>&1 &
  for _ in $(seq 60); do answers && break; sleep 1; done
  answers || { log "dockerd did not answer within 60s; its log:"; tail -20 "$RUN/dockerd.log" >&2; return 1; }
  env_lines
}

down() {
  local pid
  pid=$(cat "$RUN/dockerd.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd $pid did not stop in 60s; killing it"; kill -9 "$pid" || true; fi
  fi
  if [[ -e /run/netns/$NS ]]; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    ip netns del "$NS"
  fi
  # A dockerd that died without stopping (a killed run, a rebooted
  # container) leaves its mounts: container root filesystems, network
  # namespaces, the data root's own bind mount. Innermost first.
  local m
  awk -v run="$RUN/" -v data="$DATA" '$2 ~ "^"run || $2 == data || index($2, data"/") == 1 {print $2}' /proc/mounts |
    sort -r | while read -r m; do umount -l "$m" 2>/dev/null || log "could not unmount $m"; done
  rm -rf "$RUN"
}

case "${1:-}" in
  up) up ;;
  env) answers && env_lines ;;
  dns) echo "$BRIDGE_IP" ;;
  down) down ;;
  *) echo "usage: hack/docker.sh up|env|down|dns" >&2; exit 2 ;;
esac
