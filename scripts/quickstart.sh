#!/usr/bin/env bash
# The main job on the built-in data, CPU-sized: build the corpus, train a teacher, distil a
# student from it with I²S-TFCKD, train the same student without distillation, evaluate all
# three and the unprocessed input on the held-out test speakers, print the table.
# Every step resumes or skips what an earlier, interrupted run already finished.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON=${PYTHON:-python3}
sekd() { "$PYTHON" -m sekd "$@"; }
OUT=${OUT:-runs/quickstart}
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s elapsed)"; }

step "building the built-in corpus"
sekd data build data/builtin
step "training the teacher (cpu-teacher)"
sekd train configs/cpu-teacher.yaml train.out_dir="$OUT/teacher"
step "distilling the student with I²S-TFCKD (cpu-student)"
sekd distill configs/cpu-distill.yaml train.out_dir="$OUT/student-i2s" \
    distill.teacher="$OUT/teacher/checkpoints/best.ckpt"
step "training the same student without distillation (cpu-student)"
sekd train configs/cpu-student.yaml train.out_dir="$OUT/student-nokd"
step "evaluating on the held-out test speakers"
sekd evaluate --data data/builtin --split test --json "$OUT/scores.json" --csv "$OUT/scores.csv" \
    --ckpt teacher="$OUT/teacher/checkpoints/best.ckpt" \
    --ckpt student-i2s-tfckd="$OUT/student-i2s/checkpoints/best.ckpt" \
    --ckpt student-nokd="$OUT/student-nokd/checkpoints/best.ckpt" | tee "$OUT/table.md"
echo
echo "total time: $(( $(date +%s) - start )) s"
