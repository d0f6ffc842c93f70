#!/usr/bin/env bash
# Success-transfer load benchmark of handover with SIPp, on loopback only:
#
#   SIPp UAC customer (127.0.0.1:UAC_PORT) -> handover (127.0.0.1:PORT, UDP)
#     -> SIPp UAS agent A = 2001 (127.0.0.1:AGENT_PORT): answers, talks --refer-ms, REFERs the call
#        to <sip:2002@handover;transfer=success>, answers the NOTIFYs and handover's BYE
#     -> SIPp UAS target B = 2002 (127.0.0.1:TARGET_PORT): late-offer INVITE, 180, rings
#        --ring-ms, 200 with an SDP offer, ACK with the customer's answer, BYE from the customer
#   The customer accepts the hold and the bridging re-INVITEs, talks --talk-ms to B, then BYE.
#
# Phase 1 (basic, skipped with --no-basic): basic customer -> 2001 calls (bench/scenarios
#   uac_call.xml + uas_answer.xml, as bench/run.sh) at the same rate and holding time, for the
#   CPU comparison. Phase 2 (transfer): --rate R transfers/s for --duration S seconds.
# Per phase: completed and failed calls/transfers, achieved rate, handover CPU microseconds per
#   completed call/transfer (utime+stime of the handover process from /proc/<pid>/stat, before
#   and 2 s after the phase), the CPU each SIPp used, UDP receive-buffer drops (machine-wide and
#   per socket), the SIPp error logs grouped by symptom; at the end the ratio
#   CPU per transfer / CPU per basic call.
#
# Needs: sipp (Debian sip-tester), python3, cargo (unless HANDOVER_BIN is set), Linux /proc.
# Everything stops by itself; the script kills only the processes it started.
set -euo pipefail

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Usage: bench/transfer.sh [--rate R] [--duration S] [--refer-ms MS] [--ring-ms MS] [--talk-ms MS]
                         [--no-basic] [--port P] [--agent-port P] [--target-port P]
                         [--uac-port P] [--keep]
  --rate R         transfers (and basic calls) per second (default 200)
  --duration S     seconds of call generation per phase (default 10)
  --refer-ms MS    how long A talks to the customer before its REFER (default 500)
  --ring-ms MS     how long B rings before answering (default 100)
  --talk-ms MS     how long the customer talks to B before its BYE (default 500)
  --no-basic       skip the basic-call phase (no CPU ratio)
  --port P         handover's SIP port (default 27300; P+1 is its HTTP port)
  --agent-port P   agent A (2001) SIPp UAS port (default 27290)
  --target-port P  target B (2002) SIPp UAS port (default 27291)
  --uac-port P     customer SIPp UAC port (default 27261)
  --keep           keep the work directory (config, handover log, SIPp logs)
Environment: HANDOVER_BIN=path to a built handover binary (skips cargo build).
EOF
}

RATE=200 DURATION=10 REFER_MS=500 RING_MS=100 TALK_MS=500 BASIC=1
PORT=27300 AGENT_PORT=27290 TARGET_PORT=27291 UAC_PORT=27261 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --refer-ms) REFER_MS="$2"; shift 2 ;;
    --ring-ms) RING_MS="$2"; shift 2 ;;
    --talk-ms) TALK_MS="$2"; shift 2 ;;
    --no-basic) BASIC=0; shift ;;
    --port) PORT="$2"; shift 2 ;;
    --agent-port) AGENT_PORT="$2"; shift 2 ;;
    --target-port) TARGET_PORT="$2"; shift 2 ;;
    --uac-port) UAC_PORT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in RATE DURATION REFER_MS RING_MS TALK_MS PORT AGENT_PORT TARGET_PORT UAC_PORT; do
  case "${!v}" in ''|*[!0-9]*) echo "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a non-negative integer" >&2; exit 2 ;; esac
done
[ "$RATE" -gt 0 ] && [ "$DURATION" -gt 0 ] || { echo "--rate and --duration must be > 0" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
. "$HERE/lib.sh"
SC="$HERE/scenarios"
command -v sipp >/dev/null || { echo "sipp not found: install Debian/Ubuntu package sip-tester" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

if [ -z "${HANDOVER_BIN:-}" ]; then
  echo "# cargo build --release (no-op when up to date)"
  (cd "$ROOT" && cargo build --release --bin handover)
  HANDOVER_BIN="$ROOT/target/release/handover"
fi
[ -x "$HANDOVER_BIN" ] || { echo "not executable: $HANDOVER_BIN" >&2; exit 1; }

WORK="$(mktemp -d -t handover-xfer-bench-XXXXXX)"
HPID="" UACPID="" APID="" BPID=""
cleanup() {
  for p in $UACPID $APID $BPID $HPID; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sample_sipp() { # role=pid...: remember each SIPp's latest utime+stime (ticks) in $WORK/sipp_cpu.<role>
  local rp
  for rp in "$@"; do
    cpu_ticks "${rp#*=}" >"$WORK/sipp_cpu.tmp" 2>/dev/null && mv "$WORK/sipp_cpu.tmp" "$WORK/sipp_cpu.${rp%%=*}" || true
  done
}
sipp_cpu_line() { # phase wall_s role...: how much CPU each SIPp used (they share the machine with handover)
  local phase="$1" wall="$2" out="" r t; shift 2
  for r in "$@"; do
    t=$(cat "$WORK/sipp_cpu.$r" 2>/dev/null || echo 0)
    out="$out, $r $(awk -v t="$t" -v c="$CLK" -v w="$wall" 'BEGIN { printf "%.1f s (%.0f %% of one CPU)", t / c, t / c / w * 100 }')"
  done
  rm -f "$WORK"/sipp_cpu.*
  echo "[$phase]   SIPp CPU:${out#,}"
}
udp_drops() { # machine-wide UDP datagrams dropped for a full receive buffer (all processes)
  awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp 2>/dev/null || echo 0
}
sample_drops() { # port...: remember each socket's receive-buffer drop count (/proc/net/udp "drops")
  local p hex
  for p in "$@"; do
    hex=$(printf '%04X' "$p")
    awk -v h="$hex" 'NR > 1 && toupper($2) ~ (":" h "$") { print $NF; exit }' /proc/net/udp >"$WORK/drops.tmp" 2>/dev/null
    [ -s "$WORK/drops.tmp" ] && mv "$WORK/drops.tmp" "$WORK/drops.$p"
  done
  return 0
}
drops_line() { # phase role=port...: which socket dropped datagrams (the counters live as long as the socket)
  local phase="$1" out="" rp; shift
  for rp in "$@"; do out="$out, ${rp%%=*} $(cat "$WORK/drops.${rp#*=}" 2>/dev/null || echo '?')"; done
  rm -f "$WORK"/drops.*
  echo "[$phase]   receive-buffer drops per socket:${out#,}"
}
CLK=$(getconf CLK_TCK)
NCPU=$(getconf _NPROCESSORS_ONLN)

require_free "$PORT" handover
require_free "$AGENT_PORT" "agent A UAS"
require_free "$TARGET_PORT" "target B UAS"
require_free "$UAC_PORT" "customer UAC"

cat > "$WORK/handover.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$PORT"]
domain = "bench.local"
# concurrent calls: rate x (talk + ring + transfer) stays far below this
max_calls = 200000
# an agent that does not answer within 10 s is a failure of the run, not a queue event
ring_timeout_s = 10

[http]
listen = "127.0.0.1:$((PORT + 1))"
token = "bench"

[[trunks]]
name = "sipp"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:9"
access_number = "100"

[[agents]]
id = "2001"
password = "bench2001"
skills = ["bench"]
contact = "sip:2001@127.0.0.1:$AGENT_PORT"

[[agents]]
id = "2002"
password = "bench2002"
skills = ["bench"]
contact = "sip:2002@127.0.0.1:$TARGET_PORT"

[transfer]
# B rings --ring-ms (default 100 ms); 10 s leaves room for a loaded machine
ring_timeout_s = 10

[cdr]
path = "$WORK/cdr.jsonl"
TOML

RUST_LOG="${RUST_LOG:-warn}" "$HANDOVER_BIN" run --config "$WORK/handover.toml" >"$WORK/handover.log" 2>&1 &
HPID=$!
wait_bound "$PORT" handover
sleep 1
kill -0 "$HPID" 2>/dev/null || { echo "handover exited; log:" >&2; cat "$WORK/handover.log" >&2; exit 1; }
echo "# handover pid $HPID on udp 127.0.0.1:$PORT; A (2001) on $AGENT_PORT, B (2002) on $TARGET_PORT; work dir $WORK"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg), $NCPU CPUs"

sipp_common=(-i 127.0.0.1 -bind_local -nostdin -t u1 -trace_err -trace_stat -fd 1)
HOLD_MS=$((REFER_MS + RING_MS + TALK_MS)) # one transfer's length, without signalling time
CALLS=$((RATE * DURATION))
LIMIT=$((RATE * (HOLD_MS / 1000 + 4) * 3 + 100))
UAC_TIMEOUT=$((DURATION + HOLD_MS / 1000 + 60))
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"

# report PHASE UNIT TAIL_MS RC T0 T1 C0 C1 ROLE=stat.csv...
#   TAIL_MS: how long the last call lasts after it is created (customer's pauses and timewait);
#   appends "PHASE us_per_unit" to $SUMMARY
report() {
  python3 - "$@" "$CALLS" "$RATE" "$HOLD_MS" "$CLK" "$NCPU" "$SUMMARY" <<'PY'
import sys
args = sys.argv[1:]
phase, unit, tail_ms, rc, t0, t1, c0, c1 = args[:8]
parties = args[8:-6]
calls, rate, hold_ms, clk, ncpu, summary = args[-6:]
calls, rate, hold_ms, clk, ncpu = int(calls), int(rate), int(hold_ms), int(clk), int(ncpu)
tail_ms = int(tail_ms)

def last_row(path):
    try:
        rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(path) if l.strip()]
    except OSError:
        return {}
    return dict(zip(rows[0], rows[-1])) if len(rows) > 1 else {}

def done_at(path):
    """Seconds (1 s resolution, -fd 1) until this SIPp's last successful call: failed calls that
    wait for a timeout must not stretch the time over which the rate is measured."""
    try:
        rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(path) if l.strip()]
        h = rows[0]
        e, k = h.index("ElapsedTime(C)"), h.index("SuccessfulCall(C)")
        final = rows[-1][k]
        for r in rows[1:]:
            if r[k] == final:
                hh, mm, ss = (float(x) for x in r[e].split(":")[:3])
                return hh * 3600 + mm * 60 + ss - 0.5
    except (OSError, ValueError, IndexError):
        pass
    return None

def num(row, key):
    try:
        return int(float(row.get(key, "0") or 0))
    except ValueError:
        return 0

noise = ("Retransmissions(C)", "DeadCallMsgs(C)", "OutOfCallMsgs(C)", "AutoAnswered(C)")
ok_by_party, lines = [], []
for p in parties:
    role, path = p.split("=", 1)
    row = last_row(path)
    ok, failed = num(row, "SuccessfulCall(C)"), num(row, "FailedCall(C)")
    ok_by_party.append(ok)
    why = [f"{k[6:-3]} {num(row, k)}" for k in row if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and num(row, k)]
    extra = [f"{k[:-3]} {num(row, k)}" for k in noise if num(row, k)]
    lines.append(f"[{phase}]     {role:<9} successful {ok}, failed {failed}"
                 + (f" ({', '.join(why)})" if why else "") + (f"; {', '.join(extra)}" if extra else ""))
done = min(ok_by_party) if ok_by_party else 0
wall = float(t1) - float(t0)
until = done_at(parties[0].split("=", 1)[1]) if parties else None
# a run whose calls all completed ends with its last call; otherwise stop the clock at the last
# completion (1 s resolution) so that calls dying by timeout do not dilute the rate
span = wall if done == calls or not until else min(wall, until)
gen = max(span - tail_ms / 1000.0, 1e-3)  # time spent creating the completed calls
cpu_s = (int(c1) - int(c0)) / clk
print(f"[{phase}] target {rate} {unit}s/s x {calls}, holding time {hold_ms} ms, SIPp UAC exit {rc}")
print(f"[{phase}]   completed {done} {unit}s (every party's SIPp counted it successful), "
      f"failed {calls - done} ({(calls - done) * 100 / max(calls, 1):.2f} %), "
      f"achieved {done / gen:.1f} {unit}s/s (over {gen:.1f} s)")
for l in lines:
    print(l)
if done:
    us = cpu_s * 1e6 / done
    print(f"[{phase}]   handover CPU {cpu_s:.2f} s = {us:.1f} us per completed {unit}")
    with open(summary, "a") as f:
        f.write(f"{phase} {us:.3f}\n")
print(f"[{phase}]   handover used {cpu_s / max(wall + 2, 1e-3) * 100:.0f} % of one CPU over the phase ({ncpu} CPUs online)")
PY
}

# basic: customer -> 2001, same rate and holding time (bench/run.sh's scenarios)
run_basic() {
  local dir="$WORK/basic"; mkdir -p "$dir"
  alive
  (cd "$dir" && exec sipp -sf "$SC/uas_answer.xml" "${sipp_common[@]}" -p "$AGENT_PORT" -mp "$(mp "$AGENT_PORT" 21000)" \
      -m "$CALLS" -stf uas_stat.csv -timeout "$((UAC_TIMEOUT + 10))s" >uas.out 2>&1) &
  APID=$!
  wait_bound "$AGENT_PORT" "agent UAS"
  local t0 c0 d0 t1 c1 d1 rc=0
  d0=$(udp_drops); c0=$(cpu_ticks "$HPID"); t0=$(date +%s.%N)
  (cd "$dir" && exec sipp -sf "$SC/uac_call.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$UAC_PORT" \
      -mp "$(mp "$UAC_PORT" 20000)" -s 2001 -m "$CALLS" -r "$RATE" -rp 1000 -l "$LIMIT" -d "$HOLD_MS" -recv_timeout 8000 \
      -stf uac_stat.csv -timeout "${UAC_TIMEOUT}s" -timeout_error >uac.out 2>&1) &
  UACPID=$!
  while kill -0 "$UACPID" 2>/dev/null; do alive; sample_sipp customer="$UACPID" agent="$APID"; sample_drops "$PORT" "$UAC_PORT" "$AGENT_PORT"; sleep 0.2; done
  wait "$UACPID" || rc=$?; UACPID=""
  t1=$(date +%s.%N)
  sleep 2 # let the last BYE transactions finish before the "after" CPU reading
  alive
  c1=$(cpu_ticks "$HPID"); d1=$(udp_drops)
  sample_sipp agent="$APID"
  wait_exit "$APID" 10; APID=""
  report basic call "$HOLD_MS" "$rc" "$t0" "$t1" "$c0" "$c1" \
    "customer=$dir/uac_stat.csv" "agent=$dir/uas_stat.csv"
  sipp_cpu_line basic "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" customer agent
  echo "[basic]   UDP datagrams dropped on this machine (full receive buffers, all processes): $((d1 - d0))"
  drops_line basic handover="$PORT" customer="$UAC_PORT" agent="$AGENT_PORT"
}

# transfer: customer -> 2001 -> REFER -> 2002
run_transfer() {
  local dir="$WORK/transfer"; mkdir -p "$dir"
  alive
  (cd "$dir" && exec sipp -sf "$SC/xfer_agent.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$AGENT_PORT" \
      -mp "$(mp "$AGENT_PORT" 21000)" -s 2002 -d "$REFER_MS" -m "$CALLS" -default_behaviors all,-abortunexp \
      -stf agent_stat.csv -timeout "$((UAC_TIMEOUT + 10))s" >agent.out 2>&1) &
  APID=$!
  (cd "$dir" && exec sipp -sf "$SC/xfer_target.xml" "${sipp_common[@]}" -p "$TARGET_PORT" \
      -mp "$(mp "$TARGET_PORT" 22000)" -d "$RING_MS" -m "$CALLS" -default_behaviors all,-abortunexp \
      -stf target_stat.csv -timeout "$((UAC_TIMEOUT + 10))s" >target.out 2>&1) &
  BPID=$!
  wait_bound "$AGENT_PORT" "agent A UAS"
  wait_bound "$TARGET_PORT" "target B UAS"
  local t0 c0 d0 t1 c1 d1 rc=0
  d0=$(udp_drops); c0=$(cpu_ticks "$HPID"); t0=$(date +%s.%N)
  (cd "$dir" && exec sipp -sf "$SC/xfer_customer.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$UAC_PORT" \
      -mp "$(mp "$UAC_PORT" 20000)" -s 2001 -m "$CALLS" -r "$RATE" -rp 1000 -l "$LIMIT" -d "$TALK_MS" -recv_timeout 10000 \
      -default_behaviors all,-abortunexp -stf customer_stat.csv -timeout "${UAC_TIMEOUT}s" -timeout_error >customer.out 2>&1) &
  UACPID=$!
  while kill -0 "$UACPID" 2>/dev/null; do
    alive; sample_sipp customer="$UACPID" agent="$APID" target="$BPID"
    sample_drops "$PORT" "$UAC_PORT" "$AGENT_PORT" "$TARGET_PORT"; sleep 0.2
  done
  wait "$UACPID" || rc=$?; UACPID=""
  t1=$(date +%s.%N)
  sleep 2 # let the last BYE and NOTIFY transactions finish before the "after" CPU reading
  alive
  c1=$(cpu_ticks "$HPID"); d1=$(udp_drops)
  sample_sipp agent="$APID" target="$BPID"
  wait_exit "$APID" 10; APID=""
  wait_exit "$BPID" 5; BPID=""
  report transfer transfer "$((HOLD_MS + 500))" "$rc" "$t0" "$t1" "$c0" "$c1" \
    "customer=$dir/customer_stat.csv" "agent A=$dir/agent_stat.csv" "target B=$dir/target_stat.csv"
  sipp_cpu_line transfer "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" customer agent target
  echo "[transfer]   UDP datagrams dropped on this machine (full receive buffers, all processes): $((d1 - d0))"
  drops_line transfer handover="$PORT" customer="$UAC_PORT" "agent A=$AGENT_PORT" "target B=$TARGET_PORT"
}

print_errors() { # dir: what the SIPp error logs say, grouped (which call broke, on what message)
  python3 - "$1" <<'PY'
import collections, glob, os, re, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*_errors.log"))):
    text = open(path, errors="replace").read()
    entries = re.split(r"\n?\d{4}-\d\d-\d\d\t[0-9:.]+\t[0-9.]+: ", text)[1:]
    if not entries:
        continue
    kinds, calls, example = collections.Counter(), collections.defaultdict(set), {}
    for e in entries:
        head = e.split("\n", 1)[0]
        cid = re.search(r"Call-I[Dd]:? *'?([^' \n]+)", e)
        m = re.match(r"(\w+) call on (?:an )?unexpected message.*?(while \w+ [^,]*(?:\(index \d+\))?), received '([^\n]*)", head)
        d = re.match(r"Dead call \S+ \(aborted at index (\d+)\), received '([^\n]*)", head)
        cseq = re.search(r"\nCSeq: *\d+ (\w+)", e)
        if m:
            first = m.group(3).replace("SIP/2.0 ", "").split(" sip")[0]
            key = f"{m.group(1)} on unexpected {first} (CSeq {cseq.group(1) if cseq else '?'}) {m.group(2)}"
        elif d:
            first = d.group(2).replace("SIP/2.0 ", "").split(" sip")[0]
            key = f"message for an aborted call: {first} (CSeq {cseq.group(1) if cseq else '?'})"
        else:
            key = re.sub(r"[0-9]+", "N", re.sub(r"call: \S+", "call: <Call-ID>", head))[:150]
        kinds[key] += 1
        if cid:
            calls[key].add(cid.group(1))
        example.setdefault(key, e.strip()[:300].replace("\n", " | "))
    print(f"#   {os.path.basename(path)}: {len(entries)} entries")
    for key, n in kinds.most_common(8):
        print(f"#     {n:6d} x (in {len(calls[key])} calls) {key}")
PY
}

if [ "$BASIC" = 1 ]; then
  run_basic
  print_errors "$WORK/basic"
fi
run_transfer
print_errors "$WORK/transfer"
if grep -qE 'ERROR|WARN' "$WORK/handover.log"; then
  echo "# handover log: $(grep -cE 'ERROR|WARN' "$WORK/handover.log") ERROR/WARN lines; first:"
  grep -E 'ERROR|WARN' "$WORK/handover.log" | head -5 | sed 's/^/#   /'
fi
python3 - "$SUMMARY" <<'PY'
import sys
us = dict(l.split() for l in open(sys.argv[1]) if l.strip())
if "basic" in us and "transfer" in us:
    b, t = float(us["basic"]), float(us["transfer"])
    print(f"[ratio] CPU per transfer / CPU per basic call = {t:.1f} / {b:.1f} us = {t / b:.2f}")
PY
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$KEEP" = 0 ] && [ -n "$(find "$WORK" -name '*_errors.log' -size +0c)" ]; then
  echo "# (use --keep to keep the SIPp logs)"
fi
