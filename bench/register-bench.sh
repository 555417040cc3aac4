#!/usr/bin/env bash
# register-bench.sh: REGISTER-with-digest load over UDP loopback against
# bin/callgate and Kamailio 5.6 (the anchor registrar) in the same run, with
# the same sipp load (anchors/register-load.sh) at each rate, then response
# times (sipp rtd) and callgate's memory per binding for 10,000 phones.
#   RATES="5000 10000 20000" SECONDS_PER_RATE=5 bench/register-bench.sh
# BUFF=4194304 runs the anchor's sipp with that socket buffer
# (-buff_size): a server that answers at once fills sipp's default 208 KiB
# faster than sipp drains it, and the retransmissions that follow then
# measure sipp, not the server.
# PIN=1 gives each server one core and sipp the other (taskset): on two
# cores sipp and the server otherwise compete, and sipp, not the server,
# is what saturates first, hiding the difference in the servers' cost.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
anchors=${ANCHORS:-$root/../shared/anchors}
rates=${RATES:-"5000 10000 20000"}
secs=${SECONDS_PER_RATE:-5}
phones=${PHONES:-10000}
work=$(mktemp -d)
srv="" load=""
if [ -n "${PIN:-}" ]; then
  srv="taskset -c 1" load="taskset -c 0"
fi
cg_pid="" ka_pid=""
cleanup() {
  [ -n "$cg_pid" ] && kill "$cg_pid" 2>/dev/null || true
  [ -n "$ka_pid" ] && kill "$ka_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for tool in sipp kamailio; do command -v $tool >/dev/null || { echo "missing $tool: run make deps-bench" >&2; exit 1; }; done
[ -f "$anchors/register-load.sh" ] || { echo "anchors not found at $anchors (set ANCHORS=)" >&2; exit 1; }

# callgate: extension 101 for sipp plus $phones extensions for regload, all with the anchor's password.
{
  cat <<CFG
data_dir = "$work/data"
[log]
level = "warn"
[sip]
listen = ["udp:127.0.0.1:5080"]
allow_networks = ["127.0.0.0/8"]
keepalive_interval = "0s"
max_expires = "3600s"
[sip.ban]
max_failures = 1000
max_failures_per_ip = 1000000
[http]
listen = "127.0.0.1:18090"
api_tokens = ["bench-token-0123456789"]
[[employee]]
id = "bench"
extensions = ["101"]
sip_password = "Phone101pass"
CFG
  for ((i = 0; i < phones; i += 2)); do
    printf '[[employee]]\nid = "e%d"\nextensions = ["%d", "%d"]\nsip_password = "Phone101pass"\n' $i $((20000 + i)) $((20001 + i))
  done
} >"$work/callgate.toml"
$srv "$root/bin/callgate" run -config "$work/callgate.toml" 2>"$work/callgate.log" &
cg_pid=$!
(cd "$work" && exec $srv kamailio -f "$anchors/kamailio-registrar.cfg" -DD -E) >"$work/kamailio.log" 2>&1 &
ka_pid=$!
for i in $(seq 50); do
  curl -sf http://127.0.0.1:18090/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 1

# reg_load runs the anchor's register-load.sh. With BUFF, a sipp shim first
# on PATH adds -buff_size to every sipp the anchor starts.
if [ -n "${BUFF:-}" ]; then
  mkdir -p "$work/shim"
  printf '#!/bin/sh\nexec %s "$@" -buff_size %s\n' "$(command -v sipp)" "$BUFF" >"$work/shim/sipp"
  chmod +x "$work/shim/sipp"
  PATH="$work/shim:$PATH"
fi
reg_load() { $load bash "$anchors/register-load.sh" "$@"; }

cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
# proc_tree: a process and all its descendants. Kamailio forks its workers; the
# CPU figure is of the Kamailio this script started and its workers, never
# of another kamailio found by name.
proc_tree() { local p; echo "$1"; for p in $(pgrep -P "$1"); do proc_tree "$p"; done; }
ka_pids() { proc_tree "$ka_pid" | tr '\n' ' '; }

# rtd: p50/p99 of single request response times (ms) at a rate.
rtd() {
  local target=$1 rate=$2 count=$3 d
  d=$(mktemp -d -p "$work")
  (cd "$d" && timeout 120 $load sipp "$target" -sf "$root/bench/sipp-register-rtd.xml" -s 101 -au 101 -ap Phone101pass \
     -i 127.0.0.1 -p $((41000 + RANDOM % 1000)) -r "$rate" -m "$count" -l 2000 -nostdin -timeout 100 \
     -trace_rtt -rtt_freq 1 >/dev/null 2>&1 || true)
  awk -F';' 'FNR>1{print $2}' "$d"/*_rtt.csv 2>/dev/null | sort -n | \
    awk '{a[NR]=$1} END{if (NR==0) {print "n/a"} else printf "%s/%s ms", a[int((NR-1)*0.5)+1], a[int((NR-1)*0.99)+1]}'
}

echo "callgate, $phones distinct phones on a fresh daemon (go run ./bench/regload):"
(cd "$root" && go run ./bench/regload -target 127.0.0.1:5080 -users "$phones" -first 20000 \
   -metrics http://127.0.0.1:18090/metrics -token bench-token-0123456789)
echo
echo "| offered/s | count | callgate achieved/s | failed | CPU ms per 1k | Kamailio achieved/s | failed | CPU ms per 1k | ratio | callgate p50/p99 | Kamailio p50/p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for rate in $rates; do
  count=$((rate * secs))
  c0=$(cpu $cg_pid); cg=$(reg_load 127.0.0.1:5080 "$rate" "$count"); c1=$(cpu $cg_pid)
  k0=$(cpu $(ka_pids)); ka=$(reg_load 127.0.0.1:5090 "$rate" "$count"); k1=$(cpu $(ka_pids))
  cg_rate=$(sed -n 's/.*achieved=\([0-9]*\).*/\1/p' <<<"$cg"); cg_fail=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$cg")
  ka_rate=$(sed -n 's/.*achieved=\([0-9]*\).*/\1/p' <<<"$ka"); ka_fail=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$ka")
  tick=$(getconf CLK_TCK)
  cg_cpu=$(awk -v a=$c0 -v b=$c1 -v n=$count -v t=$tick 'BEGIN{printf "%.0f", (b-a)/t*1000/(n/1000)}')
  ka_cpu=$(awk -v a=$k0 -v b=$k1 -v n=$count -v t=$tick 'BEGIN{printf "%.0f", (b-a)/t*1000/(n/1000)}')
  ratio=$(awk -v a="$cg_rate" -v b="$ka_rate" 'BEGIN{printf "%.2f", a/b}')
  cg_lat=$(rtd 127.0.0.1:5080 "$rate" "$count"); ka_lat=$(rtd 127.0.0.1:5090 "$rate" "$count")
  echo "| $rate | $count | $cg_rate | $cg_fail | $cg_cpu | $ka_rate | $ka_fail | $ka_cpu | $ratio | $cg_lat | $ka_lat |"
done
