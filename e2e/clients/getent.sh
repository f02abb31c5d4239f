#!/bin/sh
# getent.sh: the e2e suite's glibc client. Each lookup is `getent ahostsv4
# NAME.` (glibc's resolver, as a pod's libc resolves: its resolv.conf, a new
# socket per lookup) and the script prints a report shaped like `lrpdns
# probe`'s. Usage, flags before names:
#   getent.sh --duration SECONDS [--interval SECONDS] [--fresh SUFFIX]
#     [--fresh-external SUFFIX[=WANT]] [--run R] NAME[=WANT]...
# A fresh name is never seen before: 10-R-HI-LO.SUFFIX (a pod name CoreDNS
# answers with 10.R.HI.LO) or rR-N.SUFFIX (with --fresh-external
# SUFFIX=spelled, 10-R-HI-LO.SUFFIX too); R is --run (1-254), or random.
# The report is e2e/judge.Report: failures with the time sent, name, kind
# (getent says no more than its exit code: error, or wrong) and detail; the
# queries sent in each second.
set -u
duration='' interval=0.02 fresh='' fresh_external='' run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --fresh) fresh=$2; shift 2 ;;
    --fresh-external) fresh_external=$2; shift 2 ;;
    --run) run=$2; shift 2 ;;
    -*) echo "getent.sh: unknown flag $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
duration=${duration%s}
case "$duration" in ''|*[!0-9]*) echo "getent.sh: --duration SECONDS (or Ns), a whole number" >&2; exit 2 ;; esac
case "$run" in ''|*[!0-9]*) echo "getent.sh: invalid --run $run: want 1 to 254, or 0 for a random one" >&2; exit 2 ;; esac
if [ "$run" -gt 254 ]; then echo "getent.sh: invalid --run $run: want 1 to 254, or 0 for a random one" >&2; exit 2; fi
[ "$run" -eq 0 ] && run=$(( $(od -An -N1 -tu1 /dev/urandom) % 254 + 1 ))
sent=0 answered=0 failed=0 wrong=0 slow=0 fresh_ok=0 failures=''
started=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) start_s=$(date +%s)
seconds=$(mktemp)
trap 'rm -f "$seconds"' EXIT
# lookup NAME WANT FRESH: one getent, its answer checked.
lookup() {
  sent=$((sent + 1))
  at=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
  t0=$(date +%s%N)
  echo $(( t0 / 1000000000 - start_s )) >> "$seconds"
  out=$(getent ahostsv4 "$1." 2>/dev/null)
  rc=$? why='' kind=error
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -ge 1000 ] && slow=$((slow + 1))
  if [ $rc -ne 0 ]; then
    why="getent exit $rc"
  elif [ -n "$2" ] && ! printf '%s\n' "$out" | grep -q "^$2 "; then
    wrong=$((wrong + 1)) kind=wrong why="answer $(printf '%s\n' "$out" | awk '{print $1}' | sort -u | xargs), want $2"
  else
    answered=$((answered + 1))
    [ "$3" = fresh ] && fresh_ok=$((fresh_ok + 1))
  fi
  if [ -n "$why" ]; then
    failed=$((failed + 1))
    [ "$failed" -le 50 ] && failures="$failures${failures:+,}{\"at\":\"$at\",\"name\":\"$1.\",\"kind\":\"$kind\",\"detail\":\"$why\"}"
  fi
  sleep "$interval"
}
end=$(( $(date +%s) + duration )) n=0
while [ "$(date +%s)" -lt "$end" ]; do
  for t in "$@"; do lookup "${t%%=*}" "$(case "$t" in *=*) echo "${t#*=}" ;; esac)" ''; done
  hi=$(( (n / 254) % 254 + 1 )) lo=$(( n % 254 + 1 ))
  if [ -n "$fresh" ]; then
    lookup "10-$run-$hi-$lo.$fresh" "10.$run.$hi.$lo" fresh
  fi
  if [ -n "$fresh_external" ]; then
    case "$fresh_external" in
      *=spelled) lookup "10-$run-$hi-$lo.${fresh_external%%=*}" "10.$run.$hi.$lo" fresh ;;
      *) lookup "r$run-$n.${fresh_external%%=*}" "$(case "$fresh_external" in *=*) echo "${fresh_external#*=}" ;; esac)" fresh ;;
    esac
  fi
  n=$((n + 1))
done
libc=$(getconf GNU_LIBC_VERSION 2>/dev/null || echo libc)
per_second=$(awk '{n[$1]++; if ($1 > max) max = $1} END {for (i = 0; i <= max; i++) printf "%s%d", (i ? "," : ""), n[i]}' "$seconds")
printf '{"client":"%s getent ahostsv4","sent":%d,"answered":%d,"failed":%d,"wrong":%d,"slow":%d,"failures":[%s],"answers":{"fresh":%d},"started":"%s","perSecond":[%s]}\n' \
  "$libc" "$sent" "$answered" "$failed" "$wrong" "$slow" "$failures" "$fresh_ok" "$started" "$per_second"
[ "$failed" -eq 0 ]
