#!/usr/bin/env bash
# Run `mdd-bench tune` and commit its studies every $TUNE_COMMIT_EVERY seconds (default 900) while it runs,
# and once at the end, so a stopped session loses at most the trial that was running: rerunning the
# same command resumes every study (finished trials are never repeated). How `reports/cpu/tuning/` fills.
#
#   benchmarks/tune_chunks.sh PROTOCOL METHODS BUDGETS
#   benchmarks/tune_chunks.sh cpu mdm,mtt-vl,tesla,lors,repblend 100
#
# Create the file $TUNE_STOP (default /tmp/mdd-bench-tune.STOP) to stop it: the running trial is
# interrupted (and re-run by the next call), the studies are committed. $TUNE_ARGS is added to the tune
# command, e.g. TUNE_ARGS="--executor ray --workers 2" (two one-thread trials at a time: on 2 cores the
# `cpu` protocol's trajectory steps run about as fast on one thread as on two).
set -u
cd "$(dirname "$0")/.."
proto=$1 methods=$2 budgets=$3
OUT=reports/$proto/tuning
STOP=${TUNE_STOP:-/tmp/mdd-bench-tune.STOP}
say() { echo "$(date -u +%FT%T) $*"; }
commit() {
  mdd-bench tune --status --methods "$methods" --protocol "$proto" --budgets "$budgets" --out "$OUT" \
    --no-progress > /tmp/mdd-bench-tune.status 2>&1
  [ -z "$(git status --porcelain "$OUT")" ] && return
  git add "$OUT"
  git commit -qm "tuning under $proto: $methods at $budgets pairs, studies so far (benchmarks/tune_chunks.sh $proto $methods $budgets)" -- "$OUT" \
    && say "committed"
}
# shellcheck disable=SC2086  # TUNE_ARGS is split into options on purpose
mdd-bench tune --methods "$methods" --protocol "$proto" --budgets "$budgets" --out "$OUT" --no-progress ${TUNE_ARGS:-} &
pid=$!
waited=0
while kill -0 "$pid" 2>/dev/null; do
  sleep 10
  waited=$((waited + 10))
  if [ -e "$STOP" ]; then say "$STOP exists: stopping"; kill "$pid"; wait "$pid"; break; fi
  if [ "$waited" -ge "${TUNE_COMMIT_EVERY:-900}" ]; then commit; waited=0; fi
done
wait "$pid" 2>/dev/null
say "tune exit $?"
commit
