#!/usr/bin/env bash
# Runs `glam chaos` on the demo's model and data: a coordinator and three workers on
# 127.0.0.1 train glam-tiny while workers are killed, stopped, restarted, added and drained
# and the coordinator is killed and restarted; then the same job runs undisturbed, and the
# table says whether the final parameters are bitwise equal. What it shows: README.md here.
#
#   examples/chaos/run.sh [MINUTES] [SEED]          (default: 3 minutes, seed 1)
#
# Needs glam built and the demo data prepared: `make demo-data` (or set GLAM to a binary
# and DATA to a prepared data directory). Exits with glam chaos's status: 0 only when the
# disturbed run lost no committed step and ended bitwise equal to the undisturbed one.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
glam=${GLAM:-$root/build/glam}
data=${DATA:-$root/demo/data}
minutes=${1:-3}
seed=${2:-1}

[ -x "$glam" ] || { echo "chaos: no glam binary at $glam: run 'make build' first, or set GLAM" >&2; exit 1; }
[ -f "$data/manifest.json" ] ||
  { echo "chaos: no prepared data in $data: run 'make demo-data' first, or set DATA" >&2; exit 1; }

# glam-tiny with its data directory made absolute, so the workers find it from anywhere.
job=$(mktemp -d)/glam-tiny-chaos.toml
trap 'rm -rf "$(dirname "$job")"' EXIT
sed -e "s|^dir = .*|dir = \"$data\"|" "$root/configs/glam-tiny.toml" > "$job"

# A fault about every 20 s over the disturbed run; --kill-every sets the mean.
"$glam" chaos "$job" --workers 3 --minutes "$minutes" --seed "$seed" --kill-every 20
