#!/usr/bin/env bash
# call-bench.sh: concurrent recorded calls through bin/callgate on loopback,
# driven by bench/callload (VPBX stand-in + auto-answering phones + G.711 RTP
# both ways). CALLS concurrent calls set up at RATE/s, each held HOLD.
#   CALLS=500 RATE=100 HOLD=60s bench/call-bench.sh
# SSE=N also connects N live-event subscribers and reports how long the
# ringing event takes from INVITE to the last of them. C2C=1 places the
# calls as click-to-calls through the API and reports their setup times.
# CRM=1 maps every employee to RetailCRM and Megaplan stand-ins run by the
# load tool and reports INVITE → popup request times (keep RATE below the
# CRMs' rate limits: 40/s for RetailCRM's telephony API).
# TRACE=1 takes a runtime trace of callgate while the calls are set up and
# reports, with bench/setuptrace, the time each INVITE spent inside
# callgate and the delay callgate adds (without the phone's answer).
# FORMAT=opus compresses the recordings after the calls (default wav, as
# rtpengine keeps its pcap); BACKLOG=N also leaves N ten-minute recordings
# for the encoders to work through while the calls run; callload then
# also reports callgate's CPU without the encoders' (counted per thread).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${CALLS:-200} rate=${RATE:-100} hold=${HOLD:-60s} format=${FORMAT:-wav} backlog=${BACKLOG:-0}
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
[media]
rtp_ports = "20000-29999"
bind = "127.0.0.1"
[recording]
dir = "$work/rec"
min_free = "0"
format = "$format"
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
  if [ -n "${CRM:-}" ]; then
    cat <<CFG
[crm.retailcrm]
enabled = true
url = "http://127.0.0.1:18095"
api_key = "bench-retail-key-0123456789"
site = "shop"
[crm.megaplan]
enabled = true
url = "http://127.0.0.1:18096"
username = "bench@office"
password = "bench-megaplan-pass"
rps = 100
CFG
  fi
  for ((i = 0; i < calls; i++)); do
    n=$((30000 + i))
    printf '[[upstream.account]]\nuser = "acc%d"\npassword = "Secret123"\nemployee = "e%d"\n' $n $n
    printf '[[employee]]\nid = "e%d"\nextensions = ["%d"]\nsip_password = "Phone101pass"\n' $n $n
    if [ -n "${CRM:-}" ]; then printf 'retailcrm_user = %d\nmegaplan_user = %d\n' $n $n; fi
  done
} >"$work/callgate.toml"
(cd "$root" && go build -o "$work/callload" ./bench/callload)
if [ "$backlog" -gt 0 ]; then (cd "$root" && go run ./bench/recgen -dir "$work/rec" -n "$backlog" -minutes 10); fi
"$root/bin/callgate" run -config "$work/callgate.toml" 2>"$work/callgate.log" &
cg_pid=$!
sleep 1
if [ -n "${TRACE:-}" ]; then
  (for i in $(seq 100); do curl -sf http://127.0.0.1:18091/healthz >/dev/null 2>&1 && break; sleep 0.1; done
   curl -s -H "Authorization: Bearer bench-token-0123456789" \
     "http://127.0.0.1:18091/debug/pprof/trace?seconds=$((calls / rate + 10))" -o "$work/setup.trace") &
  trace_pid=$!
fi
"$work/callload" -target 127.0.0.1:5080 -listen 127.0.0.1:5071 -calls "$calls" -rate "$rate" -hold "$hold" -pid "$cg_pid" \
  -sse "${SSE:-0}" -http 127.0.0.1:18091 -token bench-token-0123456789 ${C2C:+-c2c} \
  ${CRM:+-retailcrm 127.0.0.1:18095 -megaplan 127.0.0.1:18096}
if [ -n "${TRACE:-}" ]; then
  wait "$trace_pid"
  (cd "$root" && go run ./bench/setuptrace "$work/setup.trace")
fi
echo "recordings: $(find "$work/rec" -path "*/.active" -prune -o -name "*.wav" -print | wc -l) WAV and $(find "$work/rec" -name "*.opus" | wc -l) Ogg Opus files, $(du -sh "$work/rec" 2>/dev/null | cut -f1)"; [ -n "${LIST:-}" ] && find "$work/rec" -name "*.wav" | head -8
grep -c 'level=ERROR' "$work/callgate.log" | sed 's/^/callgate errors logged: /' || true
