#!/usr/bin/env bash
# Soak test of handover with SIPp, on loopback only: a mixed load for --minutes N, while
# handover's resident memory and open file descriptors are sampled; both must stay flat.
#
#   basic calls:  SIPp UAC (PORT-39) -> handover (UDP PORT) -> SIPp UAS agent 2003 (PORT-10)
#                 (bench/scenarios uac_call.xml + uas_answer.xml, as bench/run.sh)
#   transfers:    SIPp UAC customer (PORT-38) -> handover -> agent A 2001 (PORT-9) answers and
#                 REFERs to 2002 -> target B 2002 (PORT-8) answers; the customer talks, hangs up
#                 (xfer_customer.xml, xfer_agent.xml, xfer_target.xml, as bench/transfer.sh)
#
# Both loads run at the same time, each a fixed number of calls (rate x duration, SIPp -m/-r),
# so they stop by themselves. Every --sample-s seconds one CSV row: handover's VmRSS, RssAnon,
# VmHWM and threads (/proc/<pid>/status), open fds (entries of /proc/<pid>/fd), CPU, active calls,
# live transactions and counters (GET /metrics on the HTTP API), SIPp's successful/failed counts.
# After the load: waits until active calls and transactions are back to 0 (at most 120 s).
#
# Verdict FLAT when: the highest VmRSS of the second half of the load after the warm-up
# (--warmup-s, default 120 s, at most half the load) is less than --max-growth-pct (5) above
# the highest of the first half (a leak keeps growing; a stall of the machine raises the
# allocator's high-water mark once), the fd count after the drain equals the count before the
# load, and 0 calls and 0 transactions are left. Exit status 0 only when FLAT and at most
# --max-fail-pct (0.1) % of the calls and of the transfers failed.
#
# Needs: sipp (Debian sip-tester), python3, cargo (unless HANDOVER_BIN is set), Linux /proc.
# Everything stops by itself; the script kills only the processes it started.
set -euo pipefail

usage() {
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Usage: bench/soak.sh [--minutes N] [--call-rate R] [--transfer-rate R] [--sample-s S]
                     [--warmup-s S] [--call-ms MS] [--max-growth-pct P] [--max-fail-pct P]
                     [--port P] [--csv FILE] [--keep]
  --minutes N         how long both loads run (default 30)
  --call-rate R       basic calls per second (default 100)
  --transfer-rate R   success transfers per second (default 20)
  --sample-s S        seconds between samples (default 10)
  --warmup-s S        reference sample for the RSS growth (default 120, at most minutes*30);
                      keep it above 40 s: finished transactions linger 32 s (64*T1)
  --call-ms MS        how long a basic call stays up (default 2000); a transfer lasts
                      500 ms (A talks) + 100 ms (B rings) + 500 ms (customer talks to B)
  --max-growth-pct P  allowed VmRSS growth from the warm-up sample to the end (default 5)
  --max-fail-pct P    allowed failed calls and failed transfers, % of each (default 0.1)
  --port P            handover's SIP port (default 27400); P+1 is its HTTP port, P-10, P-9,
                      P-8 the agents' SIPp, P-39 and P-38 the customers' SIPp
  --csv FILE          where to write the time series (default: a file in $TMPDIR or /tmp)
  --keep              keep the work directory (config, handover log, CDRs, SIPp logs)
Environment: HANDOVER_BIN=path to a built handover binary (skips cargo build).
EOF
}

MINUTES=30 CALL_RATE=100 XFER_RATE=20 SAMPLE_S=10 WARMUP_S=120 CALL_MS=2000
MAX_GROWTH=5 MAX_FAIL=0.1 PORT=27400 CSV="" KEEP=0
REFER_MS=500 RING_MS=100 TALK_MS=500
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --call-rate) CALL_RATE="$2"; shift 2 ;;
    --transfer-rate) XFER_RATE="$2"; shift 2 ;;
    --sample-s) SAMPLE_S="$2"; shift 2 ;;
    --warmup-s) WARMUP_S="$2"; shift 2 ;;
    --call-ms) CALL_MS="$2"; shift 2 ;;
    --max-growth-pct) MAX_GROWTH="$2"; shift 2 ;;
    --max-fail-pct) MAX_FAIL="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --csv) CSV="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in MINUTES CALL_RATE XFER_RATE SAMPLE_S WARMUP_S CALL_MS PORT; do
  case "${!v}" in ''|*[!0-9]*) echo "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a non-negative integer" >&2; exit 2 ;; esac
done
for v in MAX_GROWTH MAX_FAIL; do
  [[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--max-$( [ "$v" = MAX_FAIL ] && echo fail || echo growth )-pct must be a number" >&2; exit 2; }
done
[ "$MINUTES" -gt 0 ] && [ "$CALL_RATE" -gt 0 ] && [ "$XFER_RATE" -gt 0 ] && [ "$SAMPLE_S" -gt 0 ] ||
  { echo "--minutes, rates and --sample-s must be > 0" >&2; exit 2; }
[ "$PORT" -ge 1064 ] && [ "$PORT" -le 65000 ] || { echo "--port must be in 1064..65000" >&2; exit 2; }

LOAD_S=$((MINUTES * 60))
[ "$WARMUP_S" -le $((LOAD_S / 2)) ] || WARMUP_S=$((LOAD_S / 2))
HTTP_PORT=$((PORT + 1))
UAS_PORT=$((PORT - 10)) AGENT_PORT=$((PORT - 9)) TARGET_PORT=$((PORT - 8))
CALL_UAC_PORT=$((PORT - 39)) XFER_UAC_PORT=$((PORT - 38))
TOKEN=soak

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

WORK="$(mktemp -d -t handover-soak-XXXXXX)"
[ -n "$CSV" ] || CSV="${TMPDIR:-/tmp}/handover-soak-$(date +%Y%m%d-%H%M%S).csv"
HPID="" CUACPID="" XUACPID="" UASPID="" APID="" BPID=""
cleanup() {
  for p in $CUACPID $XUACPID $UASPID $APID $BPID $HPID; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

require_free "$PORT" handover
require_free "$UAS_PORT" "agent 2003 UAS"
require_free "$AGENT_PORT" "agent A UAS"
require_free "$TARGET_PORT" "target B UAS"
require_free "$CALL_UAC_PORT" "basic-call UAC"
require_free "$XFER_UAC_PORT" "transfer customer UAC"

cat > "$WORK/handover.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$PORT"]
domain = "bench.local"
max_calls = 200000
# an agent that does not answer within 10 s is a failure of the run, not a queue event
ring_timeout_s = 10

[http]
listen = "127.0.0.1:$HTTP_PORT"
token = "$TOKEN"

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

[[agents]]
id = "2003"
password = "bench2003"
skills = ["bench"]
contact = "sip:2003@127.0.0.1:$UAS_PORT"

[transfer]
ring_timeout_s = 10

[cdr]
path = "$WORK/cdr.jsonl"
TOML

# One CSV row per call: /proc (fds first, so that the metrics request's own connection is not
# counted), then GET /metrics, then SIPp's latest statistics rows.
cat > "$WORK/sample.py" <<'PY'
import os, sys, urllib.request
csv, t, phase, pid, http, token, clk, cstat, xstat = sys.argv[1:10]

def status():
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            out[k] = v.split()[0] if v.split() else ""
    except OSError:
        pass
    return out

try:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
except OSError:
    fds = ""
st = status()
try:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = f"{(int(f[11]) + int(f[12])) / int(clk):.2f}"
except (OSError, IndexError, ValueError):
    cpu = ""

m = {"active": "", "tx": "", "calls": 0, "xok": 0, "xall": 0, "retrans": "", "rejected": 0}
try:
    req = urllib.request.Request(f"http://{http}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, val = line.rpartition(" ")
        v = int(float(val))
        if name == "handover_active_calls":
            m["active"] = v
        elif name == "handover_transactions":
            m["tx"] = v
        elif name == "handover_retransmissions_total":
            m["retrans"] = v
        elif name.startswith("handover_calls_total"):
            m["calls"] += v
        elif name.startswith("handover_transfers_total"):
            m["xall"] += v
            if 'type="success"' in name and 'outcome="succeeded"' in name:
                m["xok"] += v
        elif name.startswith("handover_rejected_requests_total"):
            m["rejected"] += v
except Exception as e:  # a missed scrape leaves the fields empty
    print(f"# metrics scrape failed at t={t}: {e}", file=sys.stderr)

def last(path):
    try:
        rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(path) if l.strip()]
        d = dict(zip(rows[0], rows[-1])) if len(rows) > 1 else {}
        return d.get("SuccessfulCall(C)", "0"), d.get("FailedCall(C)", "0")
    except (OSError, IndexError):
        return "0", "0"

bok, bfail = last(cstat)
xok, xfail = last(xstat)
drops = ""
try:
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    drops = lines[1][lines[0].index("RcvbufErrors")]
except (OSError, IndexError, ValueError):
    pass
load1 = open("/proc/loadavg").read().split()[0]
row = [t, phase, st.get("VmRSS", ""), st.get("RssAnon", ""), st.get("VmHWM", ""), fds,
       st.get("Threads", ""), cpu, m["active"], m["tx"], m["calls"], m["xok"], m["xall"],
       m["retrans"], m["rejected"], bok, bfail, xok, xfail, drops, load1]
with open(csv, "a") as f:
    f.write(",".join(str(x) for x in row) + "\n")
print(",".join(str(x) for x in row))
PY
echo "t_s,phase,rss_kib,rss_anon_kib,hwm_kib,fds,threads,cpu_s,active_calls,transactions,calls_total,transfers_succeeded,transfers_total,retransmissions,rejected,basic_ok,basic_failed,xfer_customer_ok,xfer_customer_failed,udp_rcvbuf_errors,load1" >"$CSV"

RUST_LOG="${RUST_LOG:-warn}" "$HANDOVER_BIN" run --config "$WORK/handover.toml" >"$WORK/handover.log" 2>&1 &
HPID=$!
wait_bound "$PORT" handover
sleep 1
kill -0 "$HPID" 2>/dev/null || { echo "handover exited; log:" >&2; cat "$WORK/handover.log" >&2; exit 1; }
echo "# handover pid $HPID on udp 127.0.0.1:$PORT (http $HTTP_PORT); basic calls -> 2003 ($UAS_PORT);"
echo "#   transfers -> A 2001 ($AGENT_PORT) -> B 2002 ($TARGET_PORT); work dir $WORK"
echo "# $MINUTES min: $CALL_RATE calls/s (held $CALL_MS ms) + $XFER_RATE transfers/s, sample every $SAMPLE_S s," \
  "warm-up $WARMUP_S s; load average $(cut -d' ' -f1-3 /proc/loadavg), $(getconf _NPROCESSORS_ONLN) CPUs"
echo "# CSV: $CSV"

CLK=$(getconf CLK_TCK)
T0=""
sample() { # phase: one CSV row (echoed with a "# " prefix)
  local t; t=$(awk -v a="${T0:-$(now)}" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  echo "# $(python3 "$WORK/sample.py" "$CSV" "$t" "$1" "$HPID" "127.0.0.1:$HTTP_PORT" "$TOKEN" "$CLK" \
    "$WORK/basic/uac_stat.csv" "$WORK/transfer/customer_stat.csv")"
}

sipp_common=(-i 127.0.0.1 -bind_local -nostdin -t u1 -trace_err -trace_stat -fd 5)
CALLS=$((CALL_RATE * LOAD_S))
XFERS=$((XFER_RATE * LOAD_S))
XFER_MS=$((REFER_MS + RING_MS + TALK_MS))
CALL_LIMIT=$((CALL_RATE * (CALL_MS / 1000 + 3) * 3 + 100))
XFER_LIMIT=$((XFER_RATE * (XFER_MS / 1000 + 4) * 3 + 100))
# SIPp stops by itself after -m calls; -timeout only catches a SIPp that could not keep up
SIPP_TIMEOUT=$((LOAD_S * 3 / 2 + 120))
mkdir -p "$WORK/basic" "$WORK/transfer"

sample idle

(cd "$WORK/basic" && exec sipp -sf "$SC/uas_answer.xml" "${sipp_common[@]}" -p "$UAS_PORT" -mp "$(mp "$UAS_PORT" 21000)" \
    -m "$CALLS" -stf uas_stat.csv -timeout "$((SIPP_TIMEOUT + 30))s" >uas.out 2>&1) &
UASPID=$!
(cd "$WORK/transfer" && exec sipp -sf "$SC/xfer_agent.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$AGENT_PORT" \
    -mp "$(mp "$AGENT_PORT" 21000)" -s 2002 -d "$REFER_MS" -m "$XFERS" -default_behaviors all,-abortunexp \
    -stf agent_stat.csv -timeout "$((SIPP_TIMEOUT + 30))s" >agent.out 2>&1) &
APID=$!
(cd "$WORK/transfer" && exec sipp -sf "$SC/xfer_target.xml" "${sipp_common[@]}" -p "$TARGET_PORT" \
    -mp "$(mp "$TARGET_PORT" 22000)" -d "$RING_MS" -m "$XFERS" -default_behaviors all,-abortunexp \
    -stf target_stat.csv -timeout "$((SIPP_TIMEOUT + 30))s" >target.out 2>&1) &
BPID=$!
wait_bound "$UAS_PORT" "agent 2003 UAS"
wait_bound "$AGENT_PORT" "agent A UAS"
wait_bound "$TARGET_PORT" "target B UAS"

T0=$(now)
C0=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$HPID/stat")
(cd "$WORK/basic" && exec sipp -sf "$SC/uac_call.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$CALL_UAC_PORT" \
    -mp "$(mp "$CALL_UAC_PORT" 20000)" -s 2003 -m "$CALLS" -r "$CALL_RATE" -rp 1000 -l "$CALL_LIMIT" -d "$CALL_MS" \
    -recv_timeout 8000 -stf uac_stat.csv -timeout "${SIPP_TIMEOUT}s" -timeout_error >uac.out 2>&1) &
CUACPID=$!
(cd "$WORK/transfer" && exec sipp -sf "$SC/xfer_customer.xml" 127.0.0.1:"$PORT" "${sipp_common[@]}" -p "$XFER_UAC_PORT" \
    -mp "$(mp "$XFER_UAC_PORT" 20000)" -s 2001 -m "$XFERS" -r "$XFER_RATE" -rp 1000 -l "$XFER_LIMIT" -d "$TALK_MS" \
    -recv_timeout 10000 -default_behaviors all,-abortunexp -stf customer_stat.csv -timeout "${SIPP_TIMEOUT}s" \
    -timeout_error >customer.out 2>&1) &
XUACPID=$!
sample start

# load: both customers' SIPp running; tail: one has finished its -m calls
next=$SAMPLE_S CRC="" XRC=""
while [ -n "$CUACPID" ] || [ -n "$XUACPID" ]; do
  alive
  if [ -n "$CUACPID" ] && ! kill -0 "$CUACPID" 2>/dev/null; then
    CRC=0; wait "$CUACPID" || CRC=$?; CUACPID=""
    echo "# basic-call SIPp finished (exit $CRC) at $(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
  fi
  if [ -n "$XUACPID" ] && ! kill -0 "$XUACPID" 2>/dev/null; then
    XRC=0; wait "$XUACPID" || XRC=$?; XUACPID=""
    echo "# transfer SIPp finished (exit $XRC) at $(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
  fi
  if awk -v a="$T0" -v b="$(now)" -v n="$next" 'BEGIN { exit !(b - a >= n) }'; then
    if [ -n "$CUACPID" ] && [ -n "$XUACPID" ]; then sample load; else sample tail; fi
    next=$((next + SAMPLE_S))
  fi
  sleep 0.5
done
T1=$(now)
C1=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$HPID/stat")
wait_exit "$UASPID" 15; UASPID=""
wait_exit "$APID" 15; APID=""
wait_exit "$BPID" 10; BPID=""

# drain: transactions end 32 s (64*T1) after their last message; a call actor lives as long
echo "# load over; waiting for handover to drain (active calls and transactions 0, at most 120 s)"
drained=0
for i in $(seq 60); do
  alive
  row=$(python3 "$WORK/sample.py" /dev/null 0 probe "$HPID" "127.0.0.1:$HTTP_PORT" "$TOKEN" "$CLK" /dev/null /dev/null)
  if [ "$(echo "$row" | cut -d, -f9,10)" = "0,0" ]; then drained=1; break; fi
  [ $((i % 5)) = 0 ] && sample drain
  sleep 2
done
sleep 1
sample drained

alive
WARN=$(grep -cE 'ERROR|WARN' "$WORK/handover.log" || true)
if [ "$WARN" -gt 0 ]; then
  echo "# handover log: $WARN ERROR/WARN lines; first:"
  grep -E 'ERROR|WARN' "$WORK/handover.log" | head -5 | sed 's/^/#   /'
fi
python3 - "$CSV" "$WARMUP_S" "$MAX_GROWTH" "$MAX_FAIL" "$CALLS" "$XFERS" "$drained" "${CRC:-?}" "${XRC:-?}" \
  "$WORK/basic/uac_stat.csv" "$WORK/basic/uas_stat.csv" \
  "$WORK/transfer/customer_stat.csv" "$WORK/transfer/agent_stat.csv" "$WORK/transfer/target_stat.csv" \
  "$T0" "$T1" "$C0" "$C1" "$CLK" "$LOAD_S" <<'PY'
import csv, sys
(path, warmup_s, max_growth, max_fail, calls, xfers, drained, crc, xrc,
 c_uac, c_uas, x_cust, x_agent, x_target, t0, t1, c0, c1, clk, load_s) = sys.argv[1:]
warmup_s, max_growth, max_fail = float(warmup_s), float(max_growth), float(max_fail)
calls, xfers = int(calls), int(xfers)
rows = list(csv.DictReader(open(path)))

def num(r, k):
    try:
        return float(r[k])
    except (KeyError, ValueError, TypeError):
        return None

def stat(p):
    try:
        rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(p) if l.strip()]
        d = dict(zip(rows[0], rows[-1])) if len(rows) > 1 else {}
    except OSError:
        d = {}
    g = lambda k: int(float(d.get(k, "0") or 0))
    why = [f"{k[6:-3]} {g(k)}" for k in d if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and g(k)]
    return g("SuccessfulCall(C)"), g("FailedCall(C)"), why

def created(p):  # calls a UAC started: fewer than -m when its SIPp was stopped early
    try:
        rows = [l.rstrip("\n").rstrip(";").split(";") for l in open(p) if l.strip()]
        return int(float(dict(zip(rows[0], rows[-1])).get("OutgoingCall(C)", "0") or 0))
    except (OSError, IndexError, ValueError):
        return 0

ok = True
print("")
print("== soak result ==")
b_ok, b_fail, b_why = stat(c_uac)
u_ok, _, _ = stat(c_uas)
b_done = min(b_ok, u_ok)
parties = [("customer", x_cust), ("agent A", x_agent), ("target B", x_target)]
xs = [(n,) + stat(p) for n, p in parties]
x_done = min(x[1] for x in xs)
wall = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(clk)
for name, target, done, started, extra in (("calls", calls, b_done, created(c_uac), f"UAC {b_ok} ok / {b_fail} failed{' (' + ', '.join(b_why) + ')' if b_why else ''}, UAS {u_ok} ok; SIPp UAC exit {crc}"),
                                  ("transfers", xfers, x_done, created(x_cust), "; ".join(f"{n} {o} ok / {f} failed{' (' + ', '.join(w) + ')' if w else ''}" for n, o, f, w in xs) + f"; SIPp customer exit {xrc}")):
    failed = target - done
    pct = failed * 100 / max(target, 1)
    bad = pct > max_fail
    ok &= not bad
    early = f", {target - started} never started (SIPp stopped early)" if started < target else ""
    print(f"{name:<10} completed {done} of {target}, failed {failed} ({pct:.3f} %){early}{'  <-- above ' + str(max_fail) + ' %' if bad else ''}")
    print(f"{'':<10} ({extra})")
print(f"load       {wall:.0f} s (planned {load_s} s); handover CPU {cpu:.1f} s = {cpu / wall * 100:.1f} % of one CPU, "
      f"{cpu * 1e6 / max(b_done + x_done, 1):.0f} us per call or transfer")

load = [r for r in rows if r["phase"] in ("start", "load")]
start = next((r for r in rows if r["phase"] == "start"), rows[0])
idle = rows[0]
warm = next((r for r in load if num(r, "t_s") >= warmup_s), load[-1] if load else idle)
end = load[-1] if load else rows[-1]
final = rows[-1]
rss = lambda r: num(r, "rss_kib") or 0
anon = lambda r: num(r, "rss_anon_kib") or 0
after = [r for r in load if num(r, "t_s") >= num(warm, "t_s")]
mx = max(rows, key=rss)
# A leak keeps growing; a burst (a stalled machine: retransmissions, more calls up at once)
# raises the allocator's high-water mark once and stays there. So the verdict compares the
# highest VmRSS of the second half of the loaded time after the warm-up with the highest of
# the first half (warm-up sample included).
mid = (num(warm, "t_s") + num(end, "t_s")) / 2
h1 = [r for r in after if num(r, "t_s") <= mid] or [warm]
h2 = [r for r in after if num(r, "t_s") > mid] or [end]
m1, m2 = max(h1, key=rss), max(h2, key=rss)
growth = (rss(m2) - rss(m1)) * 100 / max(rss(m1), 1)
plain = (rss(end) - rss(warm)) * 100 / max(rss(warm), 1)
anon_growth = (anon(end) - anon(warm)) * 100 / max(anon(warm), 1)

def slope(rs):  # least-squares slope of VmRSS, KiB per minute
    if len(rs) < 3:
        return None
    xs_ = [num(r, "t_s") / 60 for r in rs]
    ys_ = [rss(r) for r in rs]
    mx_, my_ = sum(xs_) / len(xs_), sum(ys_) / len(ys_)
    den = sum((x - mx_) ** 2 for x in xs_)
    return sum((x - mx_) * (y - my_) for x, y in zip(xs_, ys_)) / den if den else 0.0

fmt = lambda v: "n/a" if v is None else f"{v:+.1f} KiB/min"
print(f"VmRSS      idle {rss(idle):.0f} KiB, start of load {rss(start):.0f}, after warm-up (t={num(warm, 't_s'):.0f} s) {rss(warm):.0f}, "
      f"max {rss(mx):.0f} (t={num(mx, 't_s'):.0f} s, {mx['phase']}), end of load (t={num(end, 't_s'):.0f} s) {rss(end):.0f}, after drain {rss(final):.0f} KiB")
print(f"           warm-up -> end of load {plain:+.2f} %; highest in the 2nd half {rss(m2):.0f} (t={num(m2, 't_s'):.0f} s) vs 1st half "
      f"{rss(m1):.0f} (t={num(m1, 't_s'):.0f} s): {growth:+.2f} % (limit {max_growth} %)")
print(f"           slope after the warm-up {fmt(slope(after))}, over the 2nd half {fmt(slope(h2))}")
print(f"RssAnon    after warm-up {anon(warm):.0f} KiB, end of load {anon(end):.0f} KiB ({anon_growth:+.2f} %), after drain {anon(final):.0f} KiB; "
      f"VmHWM {num(final, 'hwm_kib') or 0:.0f} KiB")
# where VmRSS rose after the warm-up, and what handover was going through at that moment
steps = []
for p, r in zip(after, after[1:]):
    d = rss(r) - rss(p)
    if d > 0.01 * rss(warm):
        dd = lambda k: int((num(r, k) or 0) - (num(p, k) or 0))
        steps.append((d, f"t={num(p, 't_s'):.0f}..{num(r, 't_s'):.0f} s +{d:.0f} KiB: active calls {r['active_calls']}, transactions "
                      f"{r['transactions']}, +{dd('retransmissions')} retransmissions, +{dd('basic_failed') + dd('xfer_customer_failed')} "
                      f"failed, +{dd('udp_rcvbuf_errors')} UDP drops, load {r['load1']}"))
for _, txt in sorted(steps, reverse=True)[:5]:
    print(f"  RSS step {txt}")
fds = [int(num(r, "fds")) for r in rows if num(r, "fds") is not None]
fd_start, fd_end = int(num(idle, "fds") or -1), int(num(final, "fds") or -1)
thr = [int(num(r, "threads")) for r in rows if num(r, "threads") is not None]
print(f"fds        before the load {fd_start}, min {min(fds)}, max {max(fds)}, after drain {fd_end}; threads min {min(thr)}, max {max(thr)}")
act = [int(num(r, "active_calls")) for r in load if num(r, "active_calls") is not None]
txs = [int(num(r, "transactions")) for r in load if num(r, "transactions") is not None]
if act:
    print(f"under load active calls {min(act)}..{max(act)}, transactions {min(txs)}..{max(txs)}")
fa, ft = num(final, "active_calls"), num(final, "transactions")
print(f"after drain active calls {fa if fa is None else int(fa)}, transactions {ft if ft is None else int(ft)}"
      f"{'' if drained == '1' else '  <-- not drained within 120 s'}; handover counted {int(num(final, 'calls_total') or 0)} finished calls, "
      f"{int(num(final, 'transfers_succeeded') or 0)} succeeded success transfers (of {int(num(final, 'transfers_total') or 0)} transfers), "
      f"{int(num(final, 'retransmissions') or 0)} retransmissions, {int(num(final, 'rejected') or 0)} rejected requests")
d0, d1 = num(idle, "udp_rcvbuf_errors"), num(final, "udp_rcvbuf_errors")
if d0 is not None and d1 is not None:
    print(f"UDP datagrams dropped on this machine (full receive buffers, all processes): {int(d1 - d0)}")

flat = growth < max_growth and fd_end == fd_start and fa == 0 and ft == 0
reasons = []
if growth >= max_growth:
    reasons.append(f"VmRSS grew {growth:.2f} % from the 1st to the 2nd half")
if fd_end != fd_start:
    reasons.append(f"fds {fd_start} -> {fd_end}")
if fa != 0 or ft != 0:
    reasons.append(f"{fa if fa is None else int(fa)} calls / {ft if ft is None else int(ft)} transactions left")
print(f"VERDICT    {'FLAT' if flat else 'GROWING: ' + ', '.join(reasons)}")
sys.exit(0 if flat and ok else 1)
PY
