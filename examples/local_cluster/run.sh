#!/usr/bin/env bash
# A glam cluster on this machine, acted on while it trains: a coordinator and three workers
# on loopback, a job, a worker that joins, one that is drained, one that is killed, and
# `glam status` after each action. Everything lives in a temporary directory (with its own
# HOME, where the coordinator records itself) and every process it starts is stopped by its
# process id when it ends, however it ends. README.md beside it says what it shows.
# GLAM=/path/to/glam picks the binary (default: the repository's build/glam).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
glam=${GLAM:-$here/../../build/glam}
if [ ! -x "$glam" ]; then
  echo "no glam binary at $glam: run 'make build' in the repository first, or set GLAM=/path/to/glam" >&2
  exit 1
fi
glam=$(cd "$(dirname "$glam")" && pwd)/$(basename "$glam")

work=$(mktemp -d "${TMPDIR:-/tmp}/glam-local-cluster.XXXXXX")
export HOME=$work/home        # the cluster's record goes here, not into your ~/.glam
export GLAM_COORDINATOR=      # clients find the cluster by that record
mkdir -p "$HOME"
declare -A pid_of=()          # process name -> pid, for the clean-up

cleanup() {
  local rc=$?
  for name in "${!pid_of[@]}"; do kill -TERM "${pid_of[$name]}" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for name in "${!pid_of[@]}"; do kill -0 "${pid_of[$name]}" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for name in "${!pid_of[@]}"; do kill -KILL "${pid_of[$name]}" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    echo "run.sh failed (exit $rc); the last lines of each log:" >&2
    for log in "$work"/*.log; do [ -f "$log" ] && { echo "== $log" >&2; tail -5 "$log" >&2; }; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Starts a daemon in the background (its output in $work/NAME.log) and waits, at most 30 s,
# for the line that says it serves. A worker whose first connection to the coordinator
# fails is started again (twice at most), and the script says so.
start() {
  local name=$1
  shift
  for attempt in 1 2 3; do
    "$glam" "$@" > "$work/$name.log" 2>&1 &
    pid_of[$name]=$!
    for _ in $(seq 150); do
      grep -q "listening on" "$work/$name.log" && return 0
      kill -0 "${pid_of[$name]}" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "${pid_of[$name]}" 2>/dev/null; then
      echo "$name did not start within 30 s" >&2
      return 1
    fi
    wait "${pid_of[$name]}" 2>/dev/null || true
    unset "pid_of[$name]"
    if [ "$attempt" = 3 ] || ! grep -q "cannot connect to the coordinator" "$work/$name.log"; then
      echo "$name exited:" >&2
      cat "$work/$name.log" >&2
      return 1
    fi
    echo "($name: $(tail -1 "$work/$name.log"); starting it again)"
  done
}

# Waits, at most $1 seconds, until `glam status --json` (or with $3 = text, `glam status`)
# matches the extended regex $2.
wait_status() {
  local limit=$1 pattern=$2 form=${3:-json}
  local flag=--json
  [ "$form" = text ] && flag=
  for _ in $(seq $((limit * 5))); do
    "$glam" status $flag 2>/dev/null | grep -Eq "$pattern" && return 0
    sleep 0.2
  done
  echo "status did not match /$pattern/ within $limit s:" >&2
  "$glam" status >&2 || true
  return 1
}

status() { "$glam" status; }

step "a coordinator (with the dashboard) and three workers on 127.0.0.1"
# --min-round-ms paces the job's steps, so that there is time to act on it while it trains.
start coordinator coordinator --listen 127.0.0.1:0 --state "$work/state" --http 127.0.0.1:0 --min-round-ms 100
for w in w1 w2 w3; do
  start "$w" worker --name "$w" --listen 127.0.0.1:0 --heartbeat-ms 200
done
wait_status 30 '"name":"w3"'
status    # no --coordinator: the one cluster recorded under $HOME is found
echo "the dashboard, live while this runs: $("$glam" status --dashboard-url)"

step "submit a job (3 attention shards, 6 experts, synthetic tokens, 240 steps)"
job=$("$glam" submit "$here/job.toml")
echo "submitted $job"
wait_status 60 '"step":(2[0-9]|[3-9][0-9]|[1-9][0-9][0-9])[,}]'
status

step "a fourth worker joins: at the next step boundary the units are placed again, on four workers"
start w4 worker --name w4 --listen 127.0.0.1:0 --heartbeat-ms 200
wait_status 60 '"join":1'
status

step "drain w2: its units move off at the next step boundary, then it exits"
"$glam" drain w2
wait "${pid_of[w2]}" || true
unset 'pid_of[w2]'
wait_status 60 '"drain":1'
status

step "kill -9 w3: the job rolls back to the newest step every unit has in memory and goes on"
kill -KILL "${pid_of[w3]}"
wait "${pid_of[w3]}" 2>/dev/null || true
unset 'pid_of[w3]'
wait_status 60 '"recovery":1'
status

step "the job finishes on the workers that are left"
wait_status 120 "job $job  finished" text
status

step "its events, and its last step, from STATE/jobs/$job/metrics.jsonl"
grep '"event"' "$work/state/jobs/$job/metrics.jsonl"
# The last step's loss in full: the same bits in every run, whenever the actions land.
grep '"step":239[,}]' "$work/state/jobs/$job/metrics.jsonl" | grep -oE '"(step|loss|val_loss)":[^,}]*' | paste -sd' '

echo "done; stopping every process this script started"
