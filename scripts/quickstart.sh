#!/usr/bin/env bash
# The main job on the built-in data, sized for 2 CPU cores:
#
#   bash scripts/quickstart.sh          about 25 minutes: build the corpus, distil the CPU student from the
#                                       shipped teacher with I²S-TFCKD and train the same student without
#                                       distillation (two runs at once, one core each), score the input, the
#                                       teacher and both students on the 150 test files and the 150
#                                       out-of-domain (ood) files, print the tables and the file-by-file
#                                       comparisons (sekd compare) of each split
#   bash scripts/quickstart.sh --full   about 2 hours: trains the teacher too (configs/cpu-teacher.yaml)
#                                       and distils from it; the students' full schedule, DNSMOS scores
#
# What the short job gives up against --full (whose table is results/quickstart/table.md): the students
# train 300 steps instead of 600 (the cosine schedule is compressed, not cut: the study's 400-step probe ended
# 0.04-0.05 PESQ-WB below 600 steps on the valid split, results/schedule-probes/README.md), they validate
# twice instead of five times, and the table has no DNSMOS columns (DNSMOS scores 9 s windows at every second
# of the file looped to fill them: 2.1 s of one core per file and system on an AVX2 EPYC, measured 2026-12-07,
# so about 20 minutes more on 2 cores for 4 systems x 300 files). The teacher is the CPU study's, shipped as
# pretrained:cpu-teacher (2400 steps, best at step 1200, on the corpus before it was widened; 1.590 PESQ-WB on
# today's test files against the full job's 1.648), not one trained here. Every file of both splits is
# scored, as in the full job.
#
# Every stage resumes or skips what an interrupted run already finished (sekd train resumes from
# last.ckpt; the evaluation runs again). Each stage prints a line when it starts, with an estimate of the
# time left, and when it ends; the students' logs are in $OUT/logs/ and their progress lines are shown.
set -euo pipefail
cd "$(dirname "$0")/.."

FULL=false
case "${1:-}" in
    --full) FULL=true ;;
    "") ;;
    *) echo "usage: bash scripts/quickstart.sh [--full]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
sekd() { "$PYTHON" -m sekd "$@"; }
DATA=data/builtin
SHIPPED_TEACHER=pretrained:cpu-teacher   # the CPU study's teacher, shipped with sekd (sekd models)

# Seconds each stage takes on 2 idle cores (AMD EPYC), for the time-left estimates. Short job: the students'
# steps, one thread each with both running, 2.0 s (I²S-TFCKD) and 0.75 s (no KD) per step, which is what the
# CPU study's runs took (results/study-cpu/*/seed*/result.json, train_seconds / 600); a validation of 40 files
# about 17 s; scoring 4 systems on the test and ood splits (300 files) without DNSMOS about 2.3 s of one core
# per file. Full job: its run of 2026-12-07 on an AVX2 host (results/quickstart/quickstart.log): teacher 53
# min, students 30, evaluation with DNSMOS 27. The corpus with the pools for online mixing: 3.5 min on 2
# cores, plus about 1 GB of Debian packages to fetch on a fresh machine.
if $FULL; then
    OUT=${OUT:-runs/quickstart-full}
    STUDENT_ARGS=()                         # the configs' schedule: 600 steps, a validation every 120
    EVALUATE_ARGS=()
    STAGES=(setup corpus teacher students evaluation comparison)
    ESTIMATES=(20 420 3160 1810 1650 30)
else
    OUT=${OUT:-runs/quickstart}
    STUDENT_ARGS=(train.max_steps=300 train.val_every=150)
    EVALUATE_ARGS=(--no-dnsmos)
    STAGES=(setup corpus students evaluation comparison)
    ESTIMATES=(20 420 660 380 10)
fi
LOGS=$OUT/logs

# ---------------------------------------------------------------- stage lines
T0=$SECONDS
stage=-1
estimated_done=0   # the estimates of the stages finished so far

clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

begin() {  # begin TEXT: the next stage starts
    stage=$((stage + 1))
    stage_text=$1
    stage_t0=$SECONDS
    local elapsed=$((SECONDS - T0)) left=0 i
    for ((i = stage; i < ${#ESTIMATES[@]}; i++)); do left=$((left + ESTIMATES[i])); done
    # A machine slower than the estimates so far: what is left takes longer in proportion, once the stages
    # done were meant to take two minutes (pip alone says little). Never shorter: a stage that found its
    # work done (a resumed run) is quick and says nothing about the machine.
    if ((estimated_done >= 120 && elapsed > estimated_done)); then left=$((left * elapsed / estimated_done)); fi
    if ((left < 60)); then left="under a minute"; else left="about $(((left + 30) / 60)) min"; fi
    echo
    echo "[$(clock $elapsed)] start: $stage_text, $left left"
}

end() {  # the stage begun last has finished
    estimated_done=$((estimated_done + ESTIMATES[stage]))
    echo "[$(clock $((SECONDS - T0)))] done: ${STAGES[stage]} ($(clock $((SECONDS - stage_t0))))"
}

# ---------------------------------------------------------------- two runs at once
declare -A SHOWN=()   # log file -> how many of its progress lines are shown already

show_progress() {  # LOG LABEL: the training progress lines LOG got since the last call, prefixed with LABEL
    local lines=() i
    [[ -f $1 ]] || return 0
    mapfile -t lines < <(grep -E '^(train|validation at)' "$1" || true)
    for ((i = ${SHOWN[$1]:-0}; i < ${#lines[@]}; i++)); do echo "  $2 ${lines[i]}"; done
    SHOWN[$1]=${#lines[@]}
}

stop() {  # PID...: SIGTERM (a training run saves last.ckpt first), then wait for them
    kill -TERM "$@" 2>/dev/null || true
    wait "$@" 2>/dev/null || true
}

# wait_for PID LOG LABEL [PID LOG LABEL ...]: until every process has ended, showing their progress lines.
# The first that fails stops the others and fails the script. (Not `wait -n`: it misses a process that
# ended before it was called.)
wait_for() {
    local pids=() logs=() labels=() running i status
    while (($#)); do pids+=("$1"); logs+=("$2"); labels+=("$3"); shift 3; done
    running=${#pids[@]}
    while ((running)); do
        sleep 2
        for i in "${!pids[@]}"; do
            [[ -n ${pids[i]} ]] || continue
            show_progress "${logs[i]}" "${labels[i]}"
            kill -0 "${pids[i]}" 2>/dev/null && continue
            status=0
            wait "${pids[i]}" || status=$?
            pids[i]=""
            running=$((running - 1))
            if ((status)); then
                echo "error: ${labels[i]} failed (exit code $status); the end of ${logs[i]}:" >&2
                tail -n 15 "${logs[i]}" >&2
                # shellcheck disable=SC2086,SC2048  # the pids still running, or none
                stop ${pids[*]}
                exit "$status"
            fi
        done
    done
}

# ---------------------------------------------------------------- the job
begin "setup (pip install -e .)"
bash scripts/setup.sh
end

begin "build the built-in corpus in $DATA"
sekd data build "$DATA"
end

TEACHER=$SHIPPED_TEACHER
if $FULL; then
    begin "train the teacher (configs/cpu-teacher.yaml, 1200 steps; log: $LOGS/teacher.log)"
    mkdir -p "$LOGS"
    "$PYTHON" -m sekd train configs/cpu-teacher.yaml train.out_dir="$OUT/teacher" >>"$LOGS/teacher.log" 2>&1 &
    teacher=$!
    trap 'stop $teacher; echo "interrupted: run the script again to continue" >&2; exit 130' INT
    trap 'stop $teacher; exit 143' TERM
    wait_for "$teacher" "$LOGS/teacher.log" "[teacher]"
    trap - INT TERM
    TEACHER=$OUT/teacher/checkpoints/best.ckpt
    end
fi

begin "distil the I²S-TFCKD student and train the no-KD student (two at once, one core each; logs: $LOGS/)"
mkdir -p "$LOGS"
"$PYTHON" -m sekd distill configs/cpu-distill.yaml train.out_dir="$OUT/student-i2s" distill.teacher="$TEACHER" \
    train.threads=1 "${STUDENT_ARGS[@]}" >>"$LOGS/student-i2s.log" 2>&1 &
i2s=$!
"$PYTHON" -m sekd train configs/cpu-student.yaml train.out_dir="$OUT/student-nokd" \
    train.threads=1 "${STUDENT_ARGS[@]}" >>"$LOGS/student-nokd.log" 2>&1 &
nokd=$!
trap 'stop $i2s $nokd; echo "interrupted: run the script again to continue" >&2; exit 130' INT
trap 'stop $i2s $nokd; exit 143' TERM
wait_for "$i2s" "$LOGS/student-i2s.log" "[I²S-TFCKD]" "$nokd" "$LOGS/student-nokd.log" "[no KD]"
trap - INT TERM
end

begin "score the input, the teacher and both students on the test and ood splits"
sekd evaluate --data "$DATA" --split test --split ood "${EVALUATE_ARGS[@]}" --json "$OUT/scores.json" \
    --csv "$OUT/scores.csv" \
    --ckpt teacher="$TEACHER" \
    --ckpt student-i2s-tfckd="$OUT/student-i2s/checkpoints/best.ckpt" \
    --ckpt student-nokd="$OUT/student-nokd/checkpoints/best.ckpt" >"$OUT/table.md"
end

begin "compare the students file by file, in domain (test) and out of domain (ood)"
for split in test ood; do
    sekd compare "$OUT/scores.$split.csv" --against student-nokd >"$OUT/compare-nokd.$split.md"
    sekd compare "$OUT/scores.$split.csv" --against noisy >"$OUT/compare-noisy.$split.md"
done
end

echo
cat "$OUT/table.md"
for split in test ood; do
    echo
    echo "split $split:"
    cat "$OUT/compare-nokd.$split.md"
    echo
    cat "$OUT/compare-noisy.$split.md"
done
echo
echo "total time: $(clock $((SECONDS - T0))) (results in $OUT/)"
