#!/usr/bin/env bash
# webrtc-bench.sh: callgate's cost of browser phones' calls (WebRTC bridged
# to the relay) against desk phones' (plain RTP), measured in one run of
# one bin/callgate: CALLS concurrent recorded inbound calls with a tone
# both ways, held HOLD once all are up, alternating ROUNDS times per mode.
#   CALLS=100 HOLD=20s ROUNDS=2 bench/webrtc-bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${CALLS:-100} hold=${HOLD:-20s} rounds=${ROUNDS:-2} rate=${RATE:-20}
work=$(mktemp -d)
cg_pid=""
cleanup() { [ -n "$cg_pid" ] && kill "$cg_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
{
  cat <<CFG
data_dir = "$work/data"
[log]
level = "warn"
[sip]
listen = ["udp:127.0.0.1:5080"]
allow_networks = ["127.0.0.0/8"]
keepalive_interval = "0s"
tcp_max_per_ip = $((calls + 50))
[media]
rtp_ports = "20000-29999"
bind = "127.0.0.1"
[recording]
dir = "$work/rec"
min_free = "0"
format = "wav"
[upstream]
registrar = "udp:127.0.0.1:5071"
domain = "vpbx.bench"
trusted_sources = ["127.0.0.1/32"]
expires = "3600s"
[http]
listen = "127.0.0.1:18091"
api_tokens = ["bench-token-0123456789"]
public_url = "http://127.0.0.1:18091"
CFG
  for ((i = 0; i < calls; i++)); do
    n=$((30000 + i))
    printf '[[upstream.account]]\nuser = "acc%d"\npassword = "Secret123"\nemployee = "e%d"\n' $n $n
    printf '[[employee]]\nid = "e%d"\nextensions = ["%d"]\nsip_password = "Phone101pass"\n' $n $n
  done
} >"$work/callgate.toml"
(cd "$root" && go build -o "$work/webrtcload" ./bench/webrtcload)
"$root/bin/callgate" run -config "$work/callgate.toml" 2>"$work/callgate.log" &
cg_pid=$!
sleep 1
"$work/webrtcload" -sip 127.0.0.1:5080 -http 127.0.0.1:18091 -listen 127.0.0.1:5071 -calls "$calls" -rate "$rate" -hold "$hold" -rounds "$rounds" -pid "$cg_pid" -token bench-token-0123456789
grep -c 'level=ERROR' "$work/callgate.log" | sed 's/^/callgate errors logged: /' || true
