#!/usr/bin/env bash
# The fair reference grid (issues 32 and 34) as one resumable sequence: rerun it in each session and it
# goes on where the last one stopped. Trials and cells already finished are never repeated; every stage
# commits as it goes (tune_chunks.sh, grid_chunks.sh), and the tuned values are packaged
# (mdd_bench/protocols/tuned/PROTOCOL.toml) once every study of a protocol's stage has all its trials.
#
#   benchmarks/fair_grid.sh          # run what is left
#   benchmarks/fair_grid.sh --list   # the stages, and which are done
#
# Create $FAIR_STOP (default /tmp/mdd-bench-fair.STOP) to stop: the running tune or grid chunk stops
# as its own stop file would make it, and no further stage starts. Create $FAIR_DRAIN (default
# /tmp/mdd-bench-fair.DRAIN) before a planned stop instead (as long before it as a trial or a cell takes,
# 20-40 minutes on 2 cores): the running stage starts no new trial or cell and ends when the running ones
# finish (`--drain-file` of `mdd-bench tune`, `run` and `ablate`), commits them, and no further stage
# starts, so no work is lost.
set -u
cd "$(dirname "$0")/.."
STOP=${FAIR_STOP:-/tmp/mdd-bench-fair.STOP}
DRAIN=${FAIR_DRAIN:-/tmp/mdd-bench-fair.DRAIN}
export TUNE_STOP=$STOP GRID_STOP=$STOP GRID_DRAIN=$DRAIN
ITERATIVE=mdm,mtt-vl,tesla,lors,repblend
ALL=random,herding,k-center,forgetting,$ITERATIVE
FROZEN=lors,repblend
RUNS=reports/cpu/runs-tuned
LONG=reports/cpu/runs-long  # one run of each cell still rising at the maximum in most seeds, 3 x longer
RAY="--executor ray --cpus-per-task 1"  # two one-thread cells or trials at a time on 2 cores
say() { echo "$(date -u +%FT%T) fair_grid: $*"; }

# Every study of PROTOCOL x METHODS x BUDGETS has the protocol's trials (from the tuner's summary.json).
tuned_all() {
  python - "$@" <<'EOF'
import json, sys
from pathlib import Path
from mdd_bench.protocol import load_protocol
proto, methods, budgets = sys.argv[1], sys.argv[2].split(","), [int(b) for b in sys.argv[3].split(",")]
path = Path(f"reports/{proto}/tuning/summary.json")
studies = json.loads(path.read_text())["studies"] if path.is_file() else []
need = load_protocol(proto).tuning.trials
have = {(s["method"], s["budget"]): s["complete"] + s["pruned"] + s["failed"] for s in studies}
sys.exit(0 if all(have.get((m, b), 0) >= need for m in methods for b in budgets) else 1)
EOF
}

tune() {  # PROTOCOL METHODS BUDGETS
  tuned_all "$@" && return 0
  [ -n "$LIST" ] && { say "todo: tune $*"; return 1; }
  say "tune $*"
  TUNE_ARGS="--executor ray --workers 2 --drain-file $DRAIN" benchmarks/tune_chunks.sh "$@"
  tuned_all "$@"
}

package() {  # PROTOCOL: its tuned.toml becomes the packaged file `mdd-bench run` applies by default
  local from=reports/$1/tuning/tuned.toml to=mdd_bench/protocols/tuned/$1.toml
  cmp -s "$from" "$to" && return 0
  [ -n "$LIST" ] && { say "todo: package $from as $to"; return 1; }
  mkdir -p "$(dirname "$to")" && cp "$from" "$to"
  git add "$to" && git commit -qm "$to: the tuned values of $from (benchmarks/fair_grid.sh)" -- "$to" \
    && say "packaged $to"
}

grid() {  # SPEC...: grid_chunks.sh's chunks, run on Ray two cells at a time
  if [ -n "$LIST" ]; then say "grid (skips finished cells): $*"; return 0; fi
  GRID_RUNS=$RUNS GRID_BEFORE=reports/cpu/runs GRID_ARGS=$RAY benchmarks/grid_chunks.sh "$@"
}

ablate() {  # METHOD [GROUPS]: its declared ablation groups (all of them without GROUPS), hard track
  if [ -n "$LIST" ]; then say "ablate (skips finished cells): $*"; return 0; fi
  [ -e "$STOP" ] || [ -e "$DRAIN" ] && return 1
  # shellcheck disable=SC2086  # RAY is split into options on purpose
  mdd-bench ablate "$1" --protocol cpu --budget 100 --seeds 0,1,2 ${2:+--groups "$2"} --out "$RUNS" \
    --tuned packaged --drain-file "$DRAIN" $RAY -q
  [ -z "$(git status --porcelain "$RUNS")" ] && return 0
  mdd-bench report --runs "$RUNS" --out "$RUNS/report" --no-gallery --before reports/cpu/runs
  local drained=""
  [ -e "$DRAIN" ] && drained=": drained before a planned stop (cells not started then run on the next call)"
  git add "$RUNS" && git commit -qm "$1 ablations (${2:-all groups}) under cpu at 100 pairs, seeds 0,1,2 (benchmarks/fair_grid.sh)$drained" \
    -- "$RUNS" && say "committed $1 ablations"
}

long() {  # seed 0 of each grid cell still rising at the maximum in most seeds, to 3 x that maximum
  local cells cell proto method budget top
  cells=$(python benchmarks/still_rising.py --runs "$RUNS") || return 1
  if [ -n "$LIST" ]; then say "long runs (so far): ${cells:-none}"; return 0; fi
  for cell in $cells; do
    [ -e "$STOP" ] || [ -e "$DRAIN" ] && return 1
    IFS=: read -r proto method budget top <<< "$cell"
    mdd-bench run --protocol "$proto" --methods "$method" --budgets "$budget" --seeds 0 --tracks hard,native \
      --set "$method.iterations=$((3 * top))" --tuned packaged --no-random-baseline --out "$LONG" \
      --drain-file "$DRAIN" -q
  done
  [ -z "$(git status --porcelain "$LONG" 2>/dev/null)" ] && return 0
  mdd-bench report --runs "$LONG" --out "$LONG/report" --no-gallery
  git add "$LONG" && git commit -qm "long runs (3 x the maximum) of the cells still rising: $cells (benchmarks/fair_grid.sh)" \
    -- "$LONG" && say "committed long runs"
}

LIST=""
[ "${1:-}" = --list ] && LIST=1
step() {  # --list shows every stage, stop files or not
  [ -z "$LIST" ] && for file in "$STOP" "$DRAIN"; do [ -e "$file" ] && { say "$file exists: stopped"; exit 0; }; done
  "$@" || [ -n "$LIST" ] || exit 1
}

# Issue 32: tune every iterative method at 100 pairs, then re-run the 100-pair grid with those values.
step tune cpu "$ITERATIVE" 100
step package cpu
step grid "cpu:$ITERATIVE:100:0,1,2"
# Issue 34: every method and encoder pair at 100 pairs (the sets above are still on disk), the ablations,
# then the other budgets and the frozen-tower protocol, each tuned first.
step grid "cpu:$ALL:100:0,1,2:all"
step ablate mdm
for method in mtt-vl tesla lors repblend; do step ablate "$method" factors; done
step tune cpu "$ITERATIVE" 200,500
step package cpu
step grid "cpu:$ALL:200:0,1,2" "cpu:$ALL:500:0,1,2"
step tune cpu-frozen "$FROZEN" 100,200,500
step package cpu-frozen
step grid "cpu-frozen:random,$FROZEN:100:0,1,2" "cpu-frozen:random,$FROZEN:200:0,1,2" \
  "cpu-frozen:random,$FROZEN:500:0,1,2"
step long
if [ -n "$LIST" ]; then say "end of the stages"; else say "every stage done"; fi
