# The step runner of the GPU scripts (check.sh, bench/loader/gpu_device.sh), sourced after LOG is set:
# each step under its own time limit, its output to the terminal and to $LOG as it comes, then a verdict
# (PASS / FAIL) that is also kept in STATUS for the summary.
# shellcheck shell=bash
STATUS=()

say() { echo "$*" | tee -a "$LOG"; }

# step NAME SECONDS COMMAND...: run with a time limit, output to the terminal and the log, verdict.
step() {
  local name=$1 limit=$2
  shift 2
  say "=== $name (limit ${limit}s) $(date +%H:%M:%S)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local took=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    say "PASS $name (${took}s)"; STATUS+=("PASS $name (${took}s)")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "FAIL $name: stopped at its ${limit}s limit"; STATUS+=("FAIL $name: time limit")
  else
    say "FAIL $name: exit code $rc (${took}s)"; STATUS+=("FAIL $name: exit $rc")
  fi
  return 0
}
