#!/usr/bin/env bash
# Skill-queue distribution under load, with SIPp, on loopback only:
#
#   SIPp UAC (customers) -> handover (UDP 127.0.0.1:PORT) -> queue 8000 -> N agents, each a SIPp UAS
#                                                                       at its own static contact
#
# An agent is a contact address, so every agent is its own SIPp process (one port each).
# Latency: the customer's INVITE carries its send time (gettimeofday) in Subject, which handover
# passes on; each agent logs it with its own receive time, giving the one-way customer INVITE ->
# agent INVITE time of every call (microsecond clock, same machine). Agents answer at once with
# 200 (no 180); SIPp's own INVITE -> 200 response time (-trace_rtt, whole ms) is printed too.
#
# Phase 1 (baseline): customers dial the agents directly (round robin over the N agent numbers)
#   at --rate calls/s for --duration s: no queue involved.
# Phase 2 (queue): customers dial the queue number at the same rate; handover queues each call
#   and offers it to the longest-idle agent.
# Per phase it prints completed/failed calls, achieved calls/s, handover CPU per call, and the
# customer INVITE -> agent INVITE time as mean / p50 / p95 / p99 / max. The queue's added
# latency = queue phase minus baseline. The queue phase also prints how evenly the calls
# were spread (calls per agent: min / max) and handover's queue status afterwards (HTTP API).
#
# Needs: sipp (Debian sip-tester), python3, curl, cargo (unless HANDOVER_BIN is set), Linux /proc.
# Everything stops by itself; the script kills only the processes it started.
set -euo pipefail

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Usage: bench/queue.sh [--agents N] [--rate R] [--duration S] [--call-ms MS] [--port P]
                      [--agent-base P] [--uac-port P] [--keep]
  --agents N      agent SIPp processes (default 50; 20 is lighter on a 2-core machine)
  --rate R        calls per second (default 200)
  --duration S    seconds of call generation per phase (default 10)
  --call-ms MS    talk time of each call (default 100; rate x talk time must stay below the
                  number of agents, or calls wait for a free agent)
  --port P        handover's SIP port (default 27400; P+1 is its HTTP port)
  --agent-base P  first agent port; agents use P .. P+N-1 (default 27410)
  --uac-port P    customer SIPp UAC port (default 27399)
  --keep          keep the work directory (config, SIPp logs, RTT files)
Environment: HANDOVER_BIN=path to a built handover binary (skips cargo build).
EOF
}

AGENTS=50 RATE=200 DURATION=10 CALL_MS=100 PORT=27400 AGENT_BASE=27410 UAC_PORT=27399 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) AGENTS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --call-ms) CALL_MS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --agent-base) AGENT_BASE="$2"; shift 2 ;;
    --uac-port) UAC_PORT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in AGENTS RATE DURATION CALL_MS PORT AGENT_BASE UAC_PORT; do
  case "${!v}" in ''|*[!0-9]*) echo "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a non-negative integer" >&2; exit 2 ;; esac
done
[ "$AGENTS" -ge 1 ] && [ "$AGENTS" -le 200 ] || { echo "--agents must be 1..200" >&2; exit 2; }
[ "$RATE" -gt 0 ] && [ "$RATE" -le 5000 ] && [ "$DURATION" -gt 0 ] && [ "$DURATION" -le 600 ] \
  || { echo "--rate must be 1..5000 and --duration 1..600" >&2; exit 2; }
[ "$CALL_MS" -le 60000 ] || { echo "--call-ms must be <= 60000" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
. "$HERE/lib.sh"
SC="$HERE/scenarios"
for tool in sipp python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (sipp: Debian/Ubuntu package sip-tester)" >&2; exit 1; }
done

if [ -z "${HANDOVER_BIN:-}" ]; then
  echo "# cargo build --release (no-op when up to date)"
  (cd "$ROOT" && cargo build --release --bin handover)
  HANDOVER_BIN="$ROOT/target/release/handover"
fi
[ -x "$HANDOVER_BIN" ] || { echo "not executable: $HANDOVER_BIN" >&2; exit 1; }

WORK="$(mktemp -d -t handover-queue-bench-XXXXXX)"
HPID="" UACPID="" AGENT_PIDS=""
stop_agents() {
  local p
  for p in $AGENT_PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $AGENT_PIDS; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  AGENT_PIDS=""
}
cleanup() {
  [ -n "$UACPID" ] && kill "$UACPID" 2>/dev/null || true
  stop_agents
  if [ -n "$HPID" ]; then
    kill "$HPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$HPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$HPID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK=$(getconf CLK_TCK)

require_free "$PORT" handover
require_free "$UAC_PORT" "customer UAC"
for i in $(seq 0 $((AGENTS - 1))); do require_free $((AGENT_BASE + i)) "agent $((3000 + i))"; done

# ---------------------------------------------------------------- config
{
  cat <<TOML
[sip]
listen = ["udp:127.0.0.1:$PORT"]
domain = "bench.local"

[http]
listen = "127.0.0.1:$((PORT + 1))"
token = "bench"

[[trunks]]
name = "sipp"
sources = ["127.0.0.1/32"]

[[queues]]
name = "bench"
number = "8000"
skill = "bench"
max_waiting = 5000
max_wait_s = 60
ring_timeout_s = 10
when_no_agents = "wait"
max_missed_offers = 0

[cdr]
path = "$WORK/cdr.jsonl"
TOML
  for i in $(seq 0 $((AGENTS - 1))); do
    printf '\n[[agents]]\nid = "%d"\npassword = "bench%d"\nskills = ["bench"]\ncontact = "sip:%d@127.0.0.1:%d"\n' \
      $((3000 + i)) $((3000 + i)) $((3000 + i)) $((AGENT_BASE + i))
  done
} > "$WORK/handover.toml"
"$HANDOVER_BIN" check-config "$WORK/handover.toml" >/dev/null

RUST_LOG="${RUST_LOG:-warn}" "$HANDOVER_BIN" run --config "$WORK/handover.toml" >"$WORK/handover.log" 2>&1 &
HPID=$!
wait_bound "$PORT" handover
sleep 1
alive
echo "# handover pid $HPID on udp 127.0.0.1:$PORT; $AGENTS agents on $AGENT_BASE..$((AGENT_BASE + AGENTS - 1)); work dir $WORK"

# Injection files: the queue number, or the agent numbers round robin (baseline).
echo "SEQUENTIAL" > "$WORK/queue.csv"; echo "8000;" >> "$WORK/queue.csv"
echo "SEQUENTIAL" > "$WORK/direct.csv"
for i in $(seq 0 $((AGENTS - 1))); do echo "$((3000 + i));" >> "$WORK/direct.csv"; done

# SIPp binds a media socket even without RTP; spread them (below the ephemeral port range) so
# that 50+ processes do not collide.
MEDIA_BASE=$((AGENT_BASE - 7000))
sipp_common=(-i 127.0.0.1 -bind_local -nostdin -t u1 -trace_err)
total=$((RATE * DURATION))
limit=$((RATE * (CALL_MS / 1000 + 3) * 3 + 200))
timeout_s=$((DURATION + CALL_MS / 1000 + 60))

# run_phase NAME CSV
run_phase() {
  local phase="$1" csv="$2" dir="$WORK/$1" i
  mkdir -p "$dir"
  alive
  # One SIPp per agent, in the background; each stops by itself (-timeout) if not killed.
  for i in $(seq 0 $((AGENTS - 1))); do
    mkdir -p "$dir/agent$i"
    (cd "$dir/agent$i" && exec sipp -sf "$SC/queue_agent.xml" "${sipp_common[@]}" -p $((AGENT_BASE + i)) \
        -mp $((MEDIA_BASE + 4 * i)) -trace_stat -fd 1 -stf stat.csv -trace_logs -log_file lat.log -timeout "$((timeout_s + 30))s" >out.log 2>&1) &
    AGENT_PIDS="$AGENT_PIDS $!"
  done
  for i in $(seq 0 $((AGENTS - 1))); do wait_bound $((AGENT_BASE + i)) "agent $((3000 + i))"; done
  sleep 1
  local c0 t0
  c0=$(cpu_ticks "$HPID"); t0=$(date +%s.%N)
  (cd "$dir" && exec sipp -sf "$SC/queue_uac.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$UAC_PORT" \
      -mp $((MEDIA_BASE - 4)) -inf "$csv" -m "$total" -r "$RATE" -rp 1000 -l "$limit" -d "$CALL_MS" -recv_timeout 10000 \
      -trace_stat -fd 1 -stf uac_stat.csv -trace_rtt -rtt_freq 1 \
      -timeout "${timeout_s}s" -timeout_error >uac.out 2>&1) &
  UACPID=$!
  while kill -0 "$UACPID" 2>/dev/null; do alive; sleep 0.2; done
  local rc=0; wait "$UACPID" || rc=$?; UACPID=""
  local t1; t1=$(date +%s.%N)
  sleep 2 # trailing BYE transactions, and one more SIPp statistics row everywhere
  alive
  local c1; c1=$(cpu_ticks "$HPID")
  local qstatus
  qstatus=$(curl -s -m 5 -H "Authorization: Bearer bench" "http://127.0.0.1:$((PORT + 1))/api/queues" || echo "?")
  stop_agents
  python3 - "$phase" "$dir" "$RATE" "$CALL_MS" "$rc" "$t0" "$t1" "$c0" "$c1" "$CLK" "$AGENTS" "$qstatus" <<'PY'
import glob, os, sys
(phase, d, rate, call_ms, rc, t0, t1, c0, c1, clk, agents, qstatus) = sys.argv[1:]
rate, call_ms = int(rate), int(call_ms)

def last_row(path):
    try:
        rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(path) if l.strip()]
    except OSError:
        return {}
    return dict(zip(rows[0], rows[-1])) if len(rows) > 1 else {}

uac = last_row(os.path.join(d, "uac_stat.csv"))
ok, failed = int(uac.get("SuccessfulCall(C)", 0) or 0), int(uac.get("FailedCall(C)", 0) or 0)
wall = float(t1) - float(t0)
# Time spent creating calls: the last call is held call_ms, then its BYE and 500 ms timewait.
gen = max(wall - call_ms / 1000.0 - 0.5, 1e-3)
cpu_s = (int(c1) - int(c0)) / int(clk)
print(f"[{phase}] target {rate} calls/s, talk time {call_ms} ms, {agents} agents, SIPp UAC exit {rc}")
print(f"[{phase}]   completed {ok}, failed {failed}, achieved {ok / gen:.1f} calls/s (over {gen:.1f} s)")
if ok:
    print(f"[{phase}]   handover CPU {cpu_s:.2f} s = {cpu_s * 1e6 / ok:.0f} us per call")
def summary(values):
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return sum(values) / len(values), q(0.5), q(0.95), q(0.99), values[-1]

# One-way customer INVITE sent -> agent INVITE received, from the agents' LAT log lines (us).
lat = []
for f in glob.glob(os.path.join(d, "agent*", "lat.log")):
    for line in open(f):
        parts = line.split()
        if len(parts) >= 5 and parts[0] == "LAT":
            try:
                ss, sus, rs, rus = (float(x) for x in parts[1:5])
            except ValueError:
                continue
            lat.append(((rs - ss) * 1e6 + (rus - sus)) / 1000.0)
if lat:
    mean, p50, p95, p99, mx = summary(lat)
    print(f"[{phase}]   customer INVITE -> agent INVITE ms over {len(lat)} calls: mean {mean:.3f}  "
          f"p50 {p50:.3f}  p95 {p95:.3f}  p99 {p99:.3f}  max {mx:.3f}")
    with open(os.path.join(os.path.dirname(d), f"{phase}.summary"), "w") as s:
        s.write(f"{mean} {p50} {p95} {p99} {ok / gen}\n")
rtts = []
for f in glob.glob(os.path.join(d, "*_rtt.csv")):
    for line in open(f):
        parts = line.strip().split(";")
        if len(parts) >= 3 and parts[2] == "1":
            try:
                rtts.append(float(parts[1]))
            except ValueError:
                pass
if rtts:
    mean, p50, p95, p99, mx = summary(rtts)
    print(f"[{phase}]   INVITE -> 200 at the customer (SIPp -trace_rtt, whole ms) over {len(rtts)} calls: "
          f"mean {mean:.2f}  p95 {p95:.0f}  p99 {p99:.0f}  max {mx:.0f}")
per_agent = []
for f in sorted(glob.glob(os.path.join(d, "agent*", "stat.csv"))):
    per_agent.append(int(last_row(f).get("SuccessfulCall(C)", 0) or 0))
if per_agent:
    print(f"[{phase}]   calls per agent: min {min(per_agent)}, max {max(per_agent)}, "
          f"sum {sum(per_agent)} (agents' SIPp statistics, last row)")
if phase == "queue":
    print(f"[{phase}]   queue status after the phase: {qstatus}")
PY
  if [ "$rc" != 0 ]; then echo "[$phase]   SIPp logs in $dir (use --keep to keep them)"; fi
}

run_phase baseline "$WORK/direct.csv"
sleep 2
run_phase queue "$WORK/queue.csv"

if [ -f "$WORK/baseline.summary" ] && [ -f "$WORK/queue.summary" ]; then
  python3 - "$WORK/baseline.summary" "$WORK/queue.summary" <<'PY'
import sys
b = [float(x) for x in open(sys.argv[1]).read().split()]
q = [float(x) for x in open(sys.argv[2]).read().split()]
print(f"[added by the queue] customer INVITE -> agent INVITE: mean {q[0] - b[0]:+.2f} ms, p50 {q[1] - b[1]:+.2f} ms, "
      f"p95 {q[2] - b[2]:+.2f} ms, p99 {q[3] - b[3]:+.2f} ms")
PY
fi
