# Helpers shared by the bench scripts (sourced, not run). They expect $HPID (handover's pid)
# and $WORK (the work directory, with handover.log) where they use them.

stop_pid() { # pid: TERM, wait up to 5 s, then KILL; only for processes the script started
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
wait_exit() { # pid seconds: wait for a SIPp to finish its -m calls, else stop it
  [ -n "$1" ] || return 0
  for _ in $(seq "$(($2 * 10))"); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$1"
}
udp_bound() { # port -> 0 when something is bound on 127.0.0.1:port/udp
  local hex; hex=$(printf '%04X' "$1")
  grep -qiE "^ *[0-9]+: (0100007F|00000000):$hex " /proc/net/udp
}
require_free() { # port what
  if udp_bound "$1"; then echo "udp 127.0.0.1:$1 ($2) is in use; pick other ports" >&2; exit 1; fi
}
wait_bound() { # port what
  for _ in $(seq 150); do udp_bound "$1" && return 0; sleep 0.1; done
  echo "$2 did not bind udp 127.0.0.1:$1" >&2; exit 1
}
cpu_ticks() { # utime + stime of the process (all threads), fields 14 and 15 of /proc/pid/stat
  awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"
}
user_ticks() { # utime alone (field 14): the part of cpu_ticks spent in handover's own code
  awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] }' "/proc/$1/stat"
}
alive() { # fail the run (with handover's log) when handover has exited
  kill -0 "$HPID" 2>/dev/null && return 0
  echo "handover (pid $HPID) exited; last lines of its log:" >&2; tail -20 "$WORK/handover.log" >&2; exit 1
}
# SIPp binds an RTP socket per instance (-mp, default 6000): give each one its own, away from
# other SIPp runs on the machine.
mp() { # base offset -> a media port in 10000..59999
  echo $(( ($1 + $2) % 50000 + 10000 ))
}
