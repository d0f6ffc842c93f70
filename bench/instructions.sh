#!/usr/bin/env bash
# User-space instructions per basic call, counted by valgrind (callgrind): deterministic, so
# it shows a change of a few per cent that CPU time on a shared machine (±10-15 % between runs)
# cannot. It counts handover's own work only, not the kernel's (system calls, the loopback
# delivery): `bench/run.sh` measures that whole cost.
#
# Runs `bench/run.sh` twice under callgrind, with N and 2N calls at a low rate (valgrind slows
# handover ~50x), and divides the difference of the totals by N, so start-up, shutdown and the
# per-second timers cancel out. Needs valgrind (Debian `valgrind`) and what bench/run.sh needs.
set -euo pipefail

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'TXT'

Usage: bench/instructions.sh [--calls N] [--rate R] [--keep]
  --calls N   calls of the shorter run (default 300, rounded up to a whole second; the
              longer run makes twice as many)
  --rate R    calls per second (default 30)
  --keep      keep the callgrind output files (callgrind_annotate shows where the count goes)
Environment: HANDOVER_BIN=path to a built handover binary (skips cargo build).
TXT
}

CALLS=300 RATE=30 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) CALLS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in CALLS RATE; do
  case "${!v}" in ''|*[!0-9]*|0) echo "--$(echo "$v" | tr 'A-Z' 'a-z') must be a positive integer" >&2; exit 2 ;; esac
done
command -v valgrind >/dev/null || { echo "valgrind not found: install Debian/Ubuntu package valgrind" >&2; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
if [ -z "${HANDOVER_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --bin handover)
  HANDOVER_BIN="$ROOT/target/release/handover"
fi
[ -x "$HANDOVER_BIN" ] || { echo "not executable: $HANDOVER_BIN" >&2; exit 1; }

OUT="$(mktemp -d -t handover-instructions-XXXXXX)"
trap '[ "$KEEP" = 1 ] && echo "# callgrind output kept in $OUT" || rm -rf "$OUT"' EXIT
# bench/run.sh starts "$HANDOVER_BIN run --config ..."; this wrapper puts valgrind in front.
cat > "$OUT/handover-under-callgrind" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.\$RUN_CALLS.out" "$HANDOVER_BIN" "\$@"
WRAP
chmod +x "$OUT/handover-under-callgrind"

total() { # seconds -> instructions of a run of RATE calls/s for that long
  local duration="$1" calls=$(( RATE * $1 ))
  local out
  out=$(RUN_CALLS="$calls" HANDOVER_BIN="$OUT/handover-under-callgrind" \
    "$HERE/run.sh" --rate "$RATE" --duration "$duration" --call-ms 100 --hold 0 2>&1) || {
    echo "$out" >&2; exit 1; }
  echo "$out" | grep -E '^\[rate\]   completed' >&2
  echo "$out" | grep -qE 'failed 0,' || { echo "calls failed under valgrind; try a lower --rate" >&2; exit 1; }
  for _ in $(seq 50); do [ -s "$OUT/callgrind.$calls.out" ] && break; sleep 0.1; done
  awk '/^totals:/ { print $2 }' "$OUT/callgrind.$calls.out"
}
SECONDS_SHORT=$(( (CALLS + RATE - 1) / RATE ))
N=$(( RATE * SECONDS_SHORT ))
short=$(total "$SECONDS_SHORT")
long=$(total $((2 * SECONDS_SHORT)))
echo "user-space instructions per basic call: $(( (long - short) / N ))" \
  "(callgrind totals: $short for $N calls, $long for $((2 * N)))"
