#!/usr/bin/env bash
# Whole-server benchmark of handover with SIPp, on loopback only:
#
#   SIPp UAC (customer, 127.0.0.1:UAC_PORT) -> handover (127.0.0.1:PORT, UDP) -> SIPp UAS (agent 2001, 127.0.0.1:UAS_PORT)
#
# Phase 1 (rate): --rate R calls/s for --duration S seconds, each call held --call-ms ms.
#   Prints achieved calls/s, failed calls, and handover's CPU microseconds per completed call
#   (utime+stime of the handover process from /proc/<pid>/stat, before and after the phase).
# Phase 2 (memory): --hold N calls (default 10000) set up at --hold-rate calls/s and held open
#   together; prints handover's resident memory before and at the peak, divided by N.
#   --hold 0 skips it.
#
# Needs: sipp (Debian sip-tester), cargo (unless HANDOVER_BIN is set), Linux /proc.
# Everything stops by itself; the script kills only the processes it started.
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Usage: bench/run.sh [--rate R] [--duration S] [--call-ms MS] [--hold N] [--hold-rate R]
                    [--port P] [--uas-port P] [--uac-port P] [--keep]
  --rate R        calls per second in phase 1 (default 200)
  --duration S    seconds of call generation in phase 1 (default 10)
  --call-ms MS    how long each phase-1 call stays up before the customer's BYE (default 1000)
  --hold N        concurrent calls for the memory phase (default 10000; 0 = skip)
  --hold-rate R   call rate while building up the held calls (default 500)
  --port P        handover's SIP port (default 27200; P+1 is its HTTP port)
  --uas-port P    agent SIPp UAS port (default 27190)
  --uac-port P    customer SIPp UAC port (default 27161)
  --keep          keep the work directory (config, SIPp logs)
Environment: HANDOVER_BIN=path to a built handover binary (skips cargo build).
EOF
}

RATE=200 DURATION=10 CALL_MS=1000 HOLD=10000 HOLD_RATE=500
PORT=27200 UAS_PORT=27190 UAC_PORT=27161 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --call-ms) CALL_MS="$2"; shift 2 ;;
    --hold) HOLD="$2"; shift 2 ;;
    --hold-rate) HOLD_RATE="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --uas-port) UAS_PORT="$2"; shift 2 ;;
    --uac-port) UAC_PORT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in RATE DURATION CALL_MS HOLD HOLD_RATE PORT UAS_PORT UAC_PORT; do
  case "${!v}" in ''|*[!0-9]*) echo "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a non-negative integer" >&2; exit 2 ;; esac
done
[ "$RATE" -gt 0 ] && [ "$DURATION" -gt 0 ] && [ "$HOLD_RATE" -gt 0 ] || { echo "rates and duration must be > 0" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
. "$HERE/lib.sh"
SC="$HERE/scenarios"
command -v sipp >/dev/null || { echo "sipp not found: install Debian/Ubuntu package sip-tester" >&2; exit 1; }

if [ -z "${HANDOVER_BIN:-}" ]; then
  echo "# cargo build --release (no-op when up to date)"
  (cd "$ROOT" && cargo build --release --bin handover)
  HANDOVER_BIN="$ROOT/target/release/handover"
fi
[ -x "$HANDOVER_BIN" ] || { echo "not executable: $HANDOVER_BIN" >&2; exit 1; }

WORK="$(mktemp -d -t handover-bench-XXXXXX)"
HPID="" UASPID="" UACPID=""
cleanup() {
  for p in $UACPID $UASPID $HPID; do
    kill "$p" 2>/dev/null || true
  done
  for p in $UACPID $UASPID $HPID; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
stat_col() { # csv column -> value of the last row
  python3 - "$1" "$2" <<'PY'
import sys
rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(sys.argv[1]) if l.strip()]
print(dict(zip(rows[0], rows[-1])).get(sys.argv[2], "0") if len(rows) > 1 else "0")
PY
}
CLK=$(getconf CLK_TCK)

require_free "$PORT" handover
require_free "$UAS_PORT" "agent UAS"
require_free "$UAC_PORT" "customer UAC"

cat > "$WORK/handover.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$PORT"]
domain = "bench.local"

[http]
listen = "127.0.0.1:$((PORT + 1))"
token = "bench"

[[trunks]]
name = "sipp"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:$UAS_PORT"
access_number = "100"

[[agents]]
id = "2001"
password = "bench2001"
skills = ["bench"]
contact = "sip:2001@127.0.0.1:$UAS_PORT"

TOML

RUST_LOG="${RUST_LOG:-warn}" "$HANDOVER_BIN" run --config "$WORK/handover.toml" >"$WORK/handover.log" 2>&1 &
HPID=$!
wait_bound "$PORT" handover
sleep 1
kill -0 "$HPID" 2>/dev/null || { echo "handover exited; log:" >&2; cat "$WORK/handover.log" >&2; exit 1; }
echo "# handover pid $HPID on udp 127.0.0.1:$PORT, agent UAS on $UAS_PORT, work dir $WORK"

sipp_common=(-i 127.0.0.1 -bind_local -nostdin -t u1 -trace_err -trace_stat -fd 1)

# run_calls PHASE CALLS RATE CALL_MS LIMIT TIMEOUT_S [SAMPLE_RSS]
run_calls() {
  local phase="$1" calls="$2" rate="$3" call_ms="$4" limit="$5" timeout_s="$6" sample="${7:-0}"
  local dir="$WORK/$phase"; mkdir -p "$dir"
  alive
  (cd "$dir" && exec sipp -sf "$SC/uas_answer.xml" "${sipp_common[@]}" -p "$UAS_PORT" -m "$calls" \
      -stf uas_stat.csv -timeout "$((timeout_s + 10))s" >uas.out 2>&1) &
  UASPID=$!
  wait_bound "$UAS_PORT" "agent UAS"
  local t0 c0 u0 rss0 peak=0
  rss0=$(rss_kib "$HPID"); c0=$(cpu_ticks "$HPID"); u0=$(user_ticks "$HPID"); t0=$(date +%s.%N)
  (cd "$dir" && exec sipp -sf "$SC/uac_call.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$UAC_PORT" \
      -s 2001 -m "$calls" -r "$rate" -rp 1000 -l "$limit" -d "$call_ms" -recv_timeout 8000 \
      -stf uac_stat.csv -timeout "${timeout_s}s" -timeout_error >uac.out 2>&1) &
  UACPID=$!
  while kill -0 "$UACPID" 2>/dev/null; do
    alive
    if [ "$sample" = 1 ]; then
      local r; r=$(rss_kib "$HPID"); [ "${r:-0}" -gt "$peak" ] && peak=$r
      sleep 0.25
    else
      sleep 0.2
    fi
  done
  local rc=0; wait "$UACPID" || rc=$?; UACPID=""
  local t1; t1=$(date +%s.%N)
  sleep 2 # let the last BYE transactions finish before the "after" CPU reading
  alive
  local c1 u1; c1=$(cpu_ticks "$HPID"); u1=$(user_ticks "$HPID")
  for _ in $(seq 100); do kill -0 "$UASPID" 2>/dev/null || break; sleep 0.1; done
  kill "$UASPID" 2>/dev/null || true; wait "$UASPID" 2>/dev/null || true; UASPID=""
  local ok failed
  ok=$(stat_col "$dir/uac_stat.csv" 'SuccessfulCall(C)'); failed=$(stat_col "$dir/uac_stat.csv" 'FailedCall(C)')
  python3 - "$phase" "$calls" "$rate" "$call_ms" "$rc" "$ok" "$failed" "$t0" "$t1" "$c0" "$c1" "$CLK" "$rss0" "$peak" "$sample" "$u0" "$u1" <<'PY'
import sys
(phase, calls, rate, call_ms, rc, ok, failed, t0, t1, c0, c1, clk, rss0, peak, sample, u0, u1) = sys.argv[1:]
calls, rate, call_ms, ok, failed = int(calls), int(rate), int(call_ms), int(ok or 0), int(failed or 0)
wall = float(t1) - float(t0)
gen = max(wall - call_ms / 1000.0, 1e-3)  # time spent creating calls (the last call is held call_ms)
cpu_s = (int(c1) - int(c0)) / int(clk)
user_s = (int(u1) - int(u0)) / int(clk)
print(f"[{phase}] target {rate} calls/s x {calls} calls, call length {call_ms} ms, SIPp UAC exit {rc}")
print(f"[{phase}]   completed {ok}, failed {failed}, achieved {ok / gen:.1f} calls/s (over {gen:.1f} s)")
if ok:
    print(f"[{phase}]   handover CPU {cpu_s:.2f} s = {cpu_s * 1e6 / ok:.1f} us per completed call"
          f" (user {user_s * 1e6 / ok:.1f}, system {(cpu_s - user_s) * 1e6 / ok:.1f})")
if sample == "1":
    rss0, peak = int(rss0), int(peak)
    print(f"[{phase}]   handover RSS {rss0} KiB before, {peak} KiB peak while {calls} calls held"
          f" = {(peak - rss0) * 1024 / max(calls, 1):.0f} bytes per established call")
PY
  if [ "$ok" != "$calls" ]; then echo "[$phase]   SIPp logs in $dir (use --keep to keep them)"; fi
}

total=$((RATE * DURATION))
run_calls rate "$total" "$RATE" "$CALL_MS" "$((RATE * (CALL_MS / 1000 + 3) * 3 + 100))" "$((DURATION + CALL_MS / 1000 + 60))"

if [ "$HOLD" -gt 0 ]; then
  hold_ms=$(( (HOLD / HOLD_RATE + 5) * 1000 ))
  run_calls hold "$HOLD" "$HOLD_RATE" "$hold_ms" "$((HOLD + 100))" "$((2 * hold_ms / 1000 + 60))" 1
fi
