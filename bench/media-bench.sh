#!/usr/bin/env bash
# media-bench.sh: the anchors' sipp media harness (shared/anchors/media-load.sh:
# callers playing the A-law sample through TARGET to a sipp answerer echoing
# RTP on 127.0.0.1:5094) run against Kamailio + rtpengine (recording to pcap)
# and against bin/callgate (recording to WAV), one after the other with the
# same RATE and COUNT.
# FORMAT=opus also compresses callgate's recordings after each call (the
# default keeps WAV, as rtpengine keeps its pcap).
#   RATE=33 COUNT=500 bench/media-bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
anchors=${ANCHORS:-$root/../shared/anchors}
rate=${RATE:-33} count=${COUNT:-500}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for tool in sipp kamailio rtpengine; do command -v $tool >/dev/null || { echo "missing $tool: make deps-bench" >&2; exit 1; }; done

echo "== Kamailio + rtpengine (userspace, pcap recording)"
mkdir -p "$work/rtpe-rec"
(cd "$work" && exec rtpengine --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 --listen-cli=127.0.0.1:9900 --port-min=40000 --port-max=49999 \
  --foreground --log-stderr --table=-1 --recording-dir="$work/rtpe-rec" --recording-method=pcap --num-threads=2) >"$work/rtpe.log" 2>&1 &
rtpe_pid=$!
pids+=($rtpe_pid)
(cd "$work" && exec kamailio -f "$anchors/kamailio-rtpengine.cfg" -DD -E) >"$work/kam.log" 2>&1 &
pids+=($!)
sleep 2
# The CPU figure is of the processes this script started (media-load.sh's
# fifth argument), never of another rtpengine or callgate found by name.
bash "$anchors/media-load.sh" "$rate" "$count" 127.0.0.1:5092 rtpengine "$rtpe_pid"
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
echo "rtpengine recordings: $(du -sh "$work/rtpe-rec" | cut -f1)"

echo "== callgate (WAV recording)"
cat >"$work/callgate.toml" <<CFG
data_dir = "$work/data"
[log]
level = "warn"
[sip]
listen = ["udp:127.0.0.1:5092"]
allow_networks = ["127.0.0.0/8"]
keepalive_interval = "0s"
max_expires = "3600s"
[media]
rtp_ports = "40000-49999"
bind = "127.0.0.1"
[recording]
dir = "$work/rec"
min_free = "0"
format = "${FORMAT:-wav}"
[upstream]
registrar = "udp:127.0.0.1:9"
domain = "vpbx.bench"
trusted_sources = ["127.0.0.1/32"]
[[upstream.account]]
user = "200"
password = "Secret123"
employee = "answerer"
[http]
listen = "127.0.0.1:18092"
api_tokens = ["bench-token-0123456789"]
[[employee]]
id = "answerer"
extensions = ["201"]
sip_password = "Phone101pass"
CFG
"$root/bin/callgate" run -config "$work/callgate.toml" 2>"$work/callgate.log" &
cg_pid=$!
pids+=($cg_pid)
sleep 1
# The sipp answerer on 127.0.0.1:5094 is the employee's phone: register it from that port.
(cd "$root" && go run ./bench/regload -target 127.0.0.1:5092 -users 1 -first 201 -bind 127.0.0.1:5094) >/dev/null
bash "$anchors/media-load.sh" "$rate" "$count" 127.0.0.1:5092 callgate "$cg_pid"
echo "callgate recordings: $(du -sh "$work/rec" | cut -f1)"
