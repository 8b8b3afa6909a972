#!/usr/bin/env bash
# Replays the three GPU stages that produced bcdi-phase-v3 (docs/MODEL_CARD.md), on one CUDA
# device with 16 CPU cores (session 12 ran them on an H200 through the device tool, 2026-12-04;
# stage 1 was sized by the probe of `device_session.sh` to 2,687 steps, stage 3 was stopped by
# its time budget at step 3,213 of 3,300: the replay fixes both). Each stage writes OUT/stageK
# (exported weights, validation log, console, summary); the last stage's weights are v3, up to
# GPU float rounding (cuDNN autotuning, bfloat16 autocast): the crystals, their order, the
# symmetries and the schedule are the same. About 12 minutes of GPU time in all.
#
#   OUT=runs/v3 bash benchmarks/training/v3/reproduce.sh
set -eu
: "${OUT:?OUT must name the output folder}"
export PYTHONUNBUFFERED=1 PYTHONPATH=. OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
common=(--device "${DEVICE:-cuda}" --batch-size 32 --workers "${WORKERS:-15}" --reuse 4
        --dislocations 0.4 --precision bf16 --channels 32,64,128,256 --minutes 30)
python3 benchmarks/training/device_train.py --out "$OUT/stage1" --run-dir /tmp/bcdi-v3-1 \
    "${common[@]}" --steps 2687 --first-sample 4000000 --lr 2e-3 --curriculum 0.3 \
    --val-every 500
python3 benchmarks/training/device_train.py --out "$OUT/stage2" --run-dir /tmp/bcdi-v3-2 \
    "${common[@]}" --steps 9000 --first-sample 5000000 --lr 1.5e-3 --curriculum 0 \
    --val-every 1000 --init-from "$OUT/stage1/weights-step2687.pt"
python3 benchmarks/training/device_train.py --out "$OUT/stage3" --run-dir /tmp/bcdi-v3-3 \
    "${common[@]}" --steps 3300 --until-step 3213 --first-sample 6000000 --lr 5e-4 \
    --curriculum 0 --val-every 1100 --init-from "$OUT/stage2/weights-step9000.pt"
