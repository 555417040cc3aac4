#!/usr/bin/env bash
# backup-bench.sh: `callgate backup` of a database holding RECORDS call
# records (written by bench/histgen through the calls store's bulk write)
# while callgate takes calls. Reports the copy's time and size, and the
# call-setup time (INVITE → 200, bench/callload with G.711 phones) of the
# calls set up while the copy ran against a run of the same calls without
# one. Two runs of CALLS calls at RATE/s, each held HOLD after the last is
# set up; the second starts the backup DELAY after its first call.
#   RECORDS=1000000 CALLS=750 RATE=50 bench/backup-bench.sh
# Ports (SIP 5180, the VPBX stand-in 5171, RTP 32000-39999) differ from
# call-bench.sh's, but two benchmarks at once measure each other: run it alone.
# Needs about three times the database's size free under WORK (default: a
# new directory in TMPDIR): the database, the copy, and the copy's
# temporary file while it is written.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
records=${RECORDS:-1000000} calls=${CALLS:-750} rate=${RATE:-50} hold=${HOLD:-1s} delay=${DELAY:-2}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
cg_pid=""
# The daemon's log goes to memory (tmpfs), as to journald through a pipe in
# production: a log file on the disk the copy fills would hold up every
# logging goroutine behind the kernel's writeback.
log=$(mktemp -p /dev/shm callgate-backup-bench.XXXXXX 2>/dev/null || echo "$work/callgate.log")
cleanup() { [ -n "$cg_pid" ] && kill "$cg_pid" 2>/dev/null || true; wait 2>/dev/null || true; if [ -z "${KEEP:-}" ]; then rm -rf "$work" "$log"; fi; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/callgate" ./cmd/callgate && go build -o "$work/callload" ./bench/callload && go build -o "$work/histgen" ./bench/histgen)
"$work/histgen" -data "$work/data" -calls "$records"
{
  cat <<CFG
data_dir = "$work/data"
[control]
socket = "$work/control.sock"
[log]
level = "info"
[sip]
listen = ["udp:127.0.0.1:5180"]
allow_networks = ["127.0.0.0/8"]
keepalive_interval = "0s"
[media]
rtp_ports = "32000-39999"
bind = "127.0.0.1"
[recording]
dir = "$work/rec"
min_free = "0"
[upstream]
registrar = "udp:127.0.0.1:5171"
domain = "vpbx.bench"
trusted_sources = ["127.0.0.1/32"]
expires = "3600s"
[http]
listen = ""
CFG
  # Two ranges of extensions, one per run, so that the second run's phones
  # are not forked to with the first run's, gone, as well.
  for first in 30000 40000; do
    for ((i = 0; i < calls; i++)); do
      n=$((first + i))
      printf '[[upstream.account]]\nuser = "acc%d"\npassword = "Secret123"\nemployee = "e%d"\n' $n $n
      printf '[[employee]]\nid = "e%d"\nextensions = ["%d"]\nsip_password = "Phone101pass"\n' $n $n
    done
  done
} >"$work/callgate.toml"
start=$(date +%s%N)
"$work/callgate" run -config "$work/callgate.toml" 2>"$log" &
cg_pid=$!
until grep -q "callgate running" "$log" 2>/dev/null; do
  kill -0 "$cg_pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
echo "callgate started on the database in $(( ($(date +%s%N) - start) / 1000000 )) ms"

# pct FILE P [FROM TO]: the P-th percentile of the setup times (ms) of the
# calls whose INVITE left between FROM and TO (Unix ns), and their count.
pct() {
  awk -v from="${3:-0}" -v to="${4:-9e18}" '$1 >= from && $1 <= to { print $2 }' "$1" | sort -n |
    awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "n/a (0 calls)"; exit } i = int(NR * p / 100); if (i < NR * p / 100) i++; if (i < 1) i = 1; printf "%.2f ms (%d calls)\n", v[i] / 1e6, NR }'
}

echo "run 1: $calls calls at $rate/s, no backup"
"$work/callload" -target 127.0.0.1:5180 -listen 127.0.0.1:5171 -calls "$calls" -rate "$rate" -hold "$hold" -first 30000 \
  -pid "$cg_pid" -setups "$work/quiet.txt"
echo "run 2: $calls calls at $rate/s, callgate backup after ${delay}s"
"$work/callload" -target 127.0.0.1:5180 -listen 127.0.0.1:5171 -calls "$calls" -rate "$rate" -hold "$hold" -first 40000 \
  -pid "$cg_pid" -setups "$work/busy.txt" &
load_pid=$!
sleep "$delay"
b0=$(date +%s%N)
"$work/callgate" backup -config "$work/callgate.toml" -o "$work/backup.db"
b1=$(date +%s%N)
wait "$load_pid"
echo
echo "database: $records call records, $(stat -c %s "$work/data/callgate.db") bytes; backup: $(stat -c %s "$work/backup.db") bytes in $(( (b1 - b0) / 1000000 )) ms (the command, verification of the copy included)"
first=$(awk 'NR == 1 || $1 < m { m = $1 } END { print m }' "$work/busy.txt")
echo "the backup ran from $(( (b0 - first) / 1000000 )) to $(( (b1 - first) / 1000000 )) ms after run 2's first INVITE"
echo "call setup p50 without backup:      $(pct "$work/quiet.txt" 50)"
echo "call setup p99 without backup:      $(pct "$work/quiet.txt" 99)"
echo "call setup p50 during the backup:   $(pct "$work/busy.txt" 50 "$b0" "$b1")"
echo "call setup p99 during the backup:   $(pct "$work/busy.txt" 99 "$b0" "$b1")"
echo "call setup p99, run 2 outside it:   $(awk -v a="$b0" -v b="$b1" '$1 < a || $1 > b' "$work/busy.txt" > "$work/outside.txt"; pct "$work/outside.txt" 99)"
grep -c 'level=ERROR' "$log" | sed 's/^/callgate errors logged: /' || true
