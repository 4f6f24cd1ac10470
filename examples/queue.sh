#!/usr/bin/env bash
# The long CPU runs, one after another, each resumable: run this again after any interruption
# (or on a new machine with runs/ copied over) and it skips what is complete and resumes the rest.
#
#   CODISTILL_DATA_DIR=/path/to/data nohup examples/queue.sh >> runs/queue.log 2>&1 &
#
# Steps run in order; a step that fails stops the queue (its error is the last lines of its log),
# so that a broken stage never burns the hours the later ones need. One step at a time: two
# CPU-heavy runs on 2 cores are slower than one after the other. Override the list with
# QUEUE_STEPS="name ..." (names below). Each step's output: runs/<recipe>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export CODISTILL_THREADS="${CODISTILL_THREADS:-2}"

declare -A STEP=(
  # issue 16: the paper's arms under one protocol (base, cd, cd_sa, the teacher)
  [paper-small]="paper-small"
  # issue 17: Reasoner x Coder at 1x1 greedy, then the 5-program sweep (HumanEval+)
  [reasoner-coder]="paper-small --arms cd,rc_student_student,rc_cd_student,rc_teacher_student,rc_student_teacher,rc_cd_teacher,rc_teacher_teacher,sweep_direct5,sweep_1x5,sweep_5x1"
  # issue 18: ELAD vs random at 50%, LEMA vs corrected-only; issue 19: SuperCorrect
  [selection]="paper-small --arms cd,elad50,random50,lema,corrected_only,hsft,hsft_dpo,cd_dpo"
  # issue 19: REER, alone and last (its scorer and the served teacher share the 2 cores)
  [reer]="paper-small --arms cd,reer --set serve.threads=1"
  # issue 16, at scale: >= 1,000 problems, base / cd / cd_sa on HumanEval+ and MBPP+
  [paper-medium]="paper-medium"
)
ORDER=(${QUEUE_STEPS:-paper-small reasoner-coder selection reer paper-medium})

for name in "${ORDER[@]}"; do
  args="${STEP[$name]:-}"
  if [ -z "$args" ]; then echo "queue: unknown step '$name' (known: ${!STEP[*]})" >&2; exit 2; fi
  recipe="${args%% *}"
  echo "queue: $(date -u +%FT%TZ) start $name: codistill run $args --out runs/$recipe"
  # shellcheck disable=SC2086
  if ! codistill run $args --out "runs/$recipe" >> "runs/$recipe.log" 2>&1; then
    echo "queue: $(date -u +%FT%TZ) $name FAILED; see the end of runs/$recipe.log, fix, and run the queue again" >&2
    exit 1
  fi
  echo "queue: $(date -u +%FT%TZ) done $name"
done
echo "queue: all steps complete"
