#!/usr/bin/env bash
# Run "$@" with the machine's background work paused, for timing on a shared machine:
#
#   PYTHONPATH=src python benchmarks/bench_infer.py --models smollm2 --wrap benchmarks/quiet.sh
#
# Every process of nice >= 5 (start background jobs with `nice -n 5` or more), plus the PIDs
# listed in the file $QUIET_PIDS (and their children), is stopped with SIGSTOP -- re-checked
# every 2 s for new ones -- and all are resumed with SIGCONT when "$@" exits. The command's
# own processes run at the caller's nice value and are not touched. If this script is killed
# with SIGKILL the stopped processes stay stopped: resume them with `kill -CONT PID`.
set -u
list=$(mktemp)
stopper() {
  while true; do
    extra=$(cat "${QUIET_PIDS:-/dev/null}" 2>/dev/null)
    kids=""
    for p in $extra; do kids="$kids $(pgrep -P "$p" 2>/dev/null)"; done
    for p in $(ps -eo pid=,ni= | awk '$2 >= 5 {print $1}') $extra $kids; do
      kill -STOP "$p" 2>/dev/null && echo "$p" >> "$list"
    done
    sleep 2
  done
}
stopper & spid=$!
resume() {
  kill "$spid" 2>/dev/null
  wait "$spid" 2>/dev/null
  for p in $(sort -u "$list"); do kill -CONT "$p" 2>/dev/null; done
  rm -f "$list"
}
trap resume EXIT
"$@"
