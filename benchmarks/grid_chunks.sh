#!/usr/bin/env bash
# Run the reference grid in resumable chunks, one `mdd-bench run` each (finished cells are skipped), and
# after each chunk regenerate the reports (and the page's screenshot, tests/test_committed_page.py) and
# commit the new result files, so a stopped session loses at most the chunk it was in. How
# `reports/cpu/runs/` was filled.
#
#   benchmarks/grid_chunks.sh PROTOCOL:METHODS:BUDGET:SEED[:ARCHS] ...
#   benchmarks/grid_chunks.sh cpu-frozen:random,repblend,lors:200:0 cpu:mdm:100:0:all
#
# An `all` chunk re-runs whole (--redistill-missing-sets) the finished cells whose saved sets are gone.
# Create the file $GRID_STOP (default /tmp/mdd-bench-grid.STOP) to stop before the next chunk. With
# $GRID_DRAIN set (a path, passed as --drain-file), creating that file makes the running chunk start no
# new cell, commit the cells that finish, and stop.
# $GRID_RUNS (default reports/cpu/runs) is the results folder; $GRID_TUNED (default packaged) is passed
# as --tuned. A results folder other than the default gets its report in $GRID_RUNS/report, and the
# README and FINDINGS (which quote the default folder) are left alone; with $GRID_BEFORE (an earlier
# results folder) that report holds the before -> after table. $GRID_ARGS is added to each run, e.g.
# GRID_ARGS="--executor ray --cpus-per-task 1" with a chunk of several seeds (SEED = 0,1,2): two one-thread
# cells at a time, which on 2 cores finish about twice as fast as one two-thread cell after another.
set -u
cd "$(dirname "$0")/.."
STOP=${GRID_STOP:-/tmp/mdd-bench-grid.STOP}
DRAIN=${GRID_DRAIN:-}
RUNS=${GRID_RUNS:-reports/cpu/runs}
TUNED=${GRID_TUNED:-packaged}
say() { echo "$(date -u +%FT%T) $*"; }

for spec in "$@"; do
  IFS=: read -r proto methods budget seed archs <<< "$spec"
  archs=${archs:-source}
  for file in "$STOP" "$DRAIN"; do
    if [ -n "$file" ] && [ -e "$file" ]; then say "$file exists: stopped before $spec"; exit 0; fi
  done
  cmd="mdd-bench run --protocol $proto --methods $methods --budgets $budget --seeds $seed --archs $archs"
  cmd+=" --tracks hard,native --tuned $TUNED --out $RUNS"
  [ "$archs" = all ] && cmd+=" --redistill-missing-sets"
  [ -n "$DRAIN" ] && cmd+=" --drain-file $DRAIN"
  cmd+=" ${GRID_ARGS:-}"
  say "chunk: $cmd"
  $cmd
  say "run exit $?"
  [ -z "$(git status --porcelain "$RUNS")" ] && continue
  if [ "$RUNS" = reports/cpu/runs ]; then
    mdd-bench report --runs "$RUNS" --out reports --no-gallery \
      && python benchmarks/readme_summary.py && python benchmarks/findings.py \
      && MDD_BENCH_SCREENSHOT=1 python -m pytest -q -p no:cacheprovider tests/test_committed_page.py
    say "report exit $?"
    git add reports README.md docs/results.md
  else
    mdd-bench report --runs "$RUNS" --out "$RUNS/report" --no-gallery ${GRID_BEFORE:+--before "$GRID_BEFORE"}
    say "report exit $?"
    git add "$RUNS"
  fi
  # A chunk whose cells were all finished already can leave nothing new once its report is rewritten.
  git diff --cached --quiet && { say "nothing new to commit"; continue; }
  what="reports, README and FINDINGS regenerated"
  [ "$RUNS" = reports/cpu/runs ] || what="its report ($RUNS/report) regenerated"
  [ -n "$DRAIN" ] && [ -e "$DRAIN" ] && what+="; drained before a planned stop (the cells not started run on the next call)"
  git commit -qm "$methods under $proto at $budget pairs, seed(s) $seed, archs $archs ($cmd); $what" \
    && say "committed"
done
