#!/usr/bin/env bash
# browser-bench.sh: the browser phone in headless Chromium against
# bin/callgate on loopback (bench/pageload): page load → registered and →
# ICE connected, INVITE → the card rings, answer → connected; ROUNDS page
# loads, each with one answered call, after one warm-up load (the browser's
# first call, reported apart).
#   ROUNDS=30 bench/browser-bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-30}
work=$(mktemp -d)
cg_pid=""
cleanup() { [ -n "$cg_pid" ] && kill "$cg_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
hash=$("$root/bin/callgate" hash-password <<<"bench-console-pass" | tail -1)
cat >"$work/callgate.toml" <<CFG
data_dir = "$work/data"
[log]
level = "warn"
[sip]
listen = ["udp:127.0.0.1:5080"]
allow_networks = ["127.0.0.0/8"]
[media]
rtp_ports = "20000-20999"
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
[[upstream.account]]
user = "acc30000"
password = "Secret123"
employee = "e30000"
[[employee]]
id = "e30000"
extensions = ["30000"]
sip_password = "Phone101pass"
password_hash = "$hash"
CFG
sox -n -r 48000 -c 1 -b 16 "$work/tone.wav" synth 60 sine 440 vol 0.5
(cd "$root" && go build -o "$work/pageload" ./bench/pageload)
"$root/bin/callgate" run -config "$work/callgate.toml" 2>"$work/callgate.log" &
cg_pid=$!
sleep 1
"$work/pageload" -url http://127.0.0.1:18091 -login e30000 -password bench-console-pass -account acc30000 -listen 127.0.0.1:5071 \
  -wav "$work/tone.wav" -chromium "$(command -v chromium)" -rounds "$rounds"
grep -c 'level=ERROR' "$work/callgate.log" | sed 's/^/callgate errors logged: /' || true
