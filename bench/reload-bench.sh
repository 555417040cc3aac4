#!/usr/bin/env bash
# reload-bench.sh: a configuration reload under load. bin/callgate runs an
# office of EMPLOYEES employees (one upstream account for each of the first
# CALLS); bench/callload sets up CALLS recorded calls with G.711 RTP both
# ways and, halfway through HOLD, puts a second file in place and sends
# SIGHUP. That file removes 10 idle employees, adds 10, changes the SIP
# passwords of 10 employees on calls and 10 idle ones, and adds an upstream
# account. Reported: the time callgate took to apply it (its log), calls
# dropped (BYEs from callgate before the generator hangs up), and the
# longest time any RTP stream went without a packet in the 2 s after the
# signal against the 2 s before. Bounded by CALLS and HOLD. DRY=1 is the
# control: the same run and spans without the reload.
#   CALLS=500 EMPLOYEES=1000 RATE=100 HOLD=20s bench/reload-bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${CALLS:-500} employees=${EMPLOYEES:-1000} rate=${RATE:-100} hold=${HOLD:-20s}
[ "$employees" -ge $((calls + 20)) ] || { echo "EMPLOYEES must be at least CALLS + 20" >&2; exit 2; }
work=$(mktemp -d)
cg_pid=""
cleanup() { [ -n "$cg_pid" ] && kill "$cg_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# office FILE RELOADED: the configuration, before (0) or after (1) the reload.
office() {
  local after=$2 first=30000 last=$((30000 + employees - 1))
  {
    cat <<CFG
data_dir = "$work/data"
[log]
level = "info"
[sip]
listen = ["udp:127.0.0.1:5080"]
allow_networks = ["127.0.0.0/8"]
keepalive_interval = "0s"
[media]
rtp_ports = "20000-29999"
bind = "127.0.0.1"
[recording]
dir = "$work/rec"
min_free = "0"
[upstream]
registrar = "udp:127.0.0.1:5071"
domain = "vpbx.bench"
trusted_sources = ["127.0.0.1/32"]
expires = "3600s"
[http]
listen = "127.0.0.1:18091"
api_tokens = ["bench-token-0123456789"]
CFG
    for ((n = first; n < first + calls; n++)); do
      printf '[[upstream.account]]\nuser = "acc%d"\npassword = "Bench-acc-secret"\nemployee = "e%d"\n' $n $n
    done
    if [ "$after" = 1 ]; then
      printf '[[upstream.account]]\nuser = "accnew"\npassword = "Bench-acc-secret"\nemployee = "e%d"\n' $((last + 1))
    fi
    for ((n = first; n <= last + 10; n++)); do
      pass=Bench-ext-pass
      if [ "$after" = 1 ]; then
        if [ $n -gt $((last - 10)) ] && [ $n -le $last ]; then continue; fi # 10 idle employees leave
        if [ $n -lt $((first + 10)) ] || { [ $n -ge $((first + calls)) ] && [ $n -lt $((first + calls + 10)) ]; }; then pass=Bench-changed-pass; fi
      elif [ $n -gt $last ]; then
        continue # the 10 who join at the reload
      fi
      printf '[[employee]]\nid = "e%d"\nextensions = ["%d"]\nsip_password = "%s"\n' $n $n $pass
    done
  } >"$1"
}
office "$work/callgate.toml" 0
office "$work/reloaded.toml" 1
"$root/bin/callgate" check-config -config "$work/reloaded.toml" >/dev/null
(cd "$root" && go build -o "$work/callload" ./bench/callload)
"$root/bin/callgate" run -config "$work/callgate.toml" 2>"$work/callgate.log" &
cg_pid=$!
sleep 1
"$work/callload" -target 127.0.0.1:5080 -listen 127.0.0.1:5071 -calls "$calls" -rate "$rate" -hold "$hold" -pid "$cg_pid" -password Bench-ext-pass \
  -reload "$work/reloaded.toml" -config "$work/callgate.toml" ${DRY:+-reload-dry}
echo "employees: $(grep -c '^\[\[employee\]\]' "$work/callgate.toml") before, $(grep -c '^\[\[employee\]\]' "$work/reloaded.toml") after"
grep 'configuration reload' "$work/callgate.log" | sed 's/^time=[^ ]* //; s/ file=[^ ]*//' || echo "callgate logged no reload"
grep -q 'account=accnew state=registered' "$work/callgate.log" && echo "the new account registered upstream" || echo "the new account did not register"
grep -c 'level=ERROR' "$work/callgate.log" | sed 's/^/callgate errors logged: /' || true
