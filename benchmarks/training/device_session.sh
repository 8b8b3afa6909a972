#!/usr/bin/env bash
# The prepared GPU training call for a session lent a device machine (one call of <= 10 min).
#
# Session 12 (H200) trained the shipped bcdi-phase-v3 (32-64-128-256 trunk) in three calls:
# 15 CPU workers simulate the crystals, each simulated batch serves 4 steps under grid
# symmetries, bfloat16, batch 32, dislocations in 40 % of every class: 0.045 s per step, about
# 10,000 steps (80,000 distinct crystals) in an 8-minute call (docs/MODEL_RESEARCH.md). v3's
# strong-class agreement flattened at 0.20-0.22 over its last 50,000 crystals, so this call
# tests capacity: a 48-96-192-384 trunk from scratch (CHANNELS; lr 2e-3, curriculum 0.3) on
# fresh crystals (samples from FIRST, past every crystal v3 saw), the cosine schedule sized to
# MINUTES by a probe of the steady step time on the device. Compare its validation log with
# benchmarks/training/v3/stage{1,2}-log.jsonl at equal crystals. Run from the repository root
# through the device tool (OUT is its return folder), with timeout_s 600:
#
#   bash benchmarks/training/device_session.sh
#
# Fine-tuning v3 instead: INIT=bcdi_stream/model/weights/bcdi-phase-v3.pt LR=5e-4 CURRICULUM=0.
# The machine stays warm ~30 s after a call: a second call made at once (FIRST past this
# call's last sample, INIT the weights it brought back, carried) costs no new start.
# As a CPU smoke test: OUT=/tmp/s DEVICE=cpu BATCH=1 PROBE=8 MINUTES=0.5 WORKERS=1 CHANNELS=4,8 bash ...
set -u
: "${OUT:?OUT must name the folder of what comes back}"
MINUTES=${MINUTES:-8.5}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-32}
PROBE=${PROBE:-40}
WORKERS=${WORKERS:-15}
REUSE=${REUSE:-4}
INIT=${INIT:-}  # empty: from scratch with CHANNELS
FIRST=${FIRST:-7000000}
LR=${LR:-2e-3}
CHANNELS=${CHANNELS:-48,96,192,384}  # used only from scratch (INIT empty)
CURRICULUM=${CURRICULUM:-0.3}
export PYTHONUNBUFFERED=1 PYTHONPATH=. OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 benchmarks/training/device_train.py --out "$OUT/run" --run-dir /tmp/bcdi-run \
    --device "$DEVICE" --minutes "$MINUTES" --steps 0 --probe-steps "$PROBE" \
    --batch-size "$BATCH" --workers "$WORKERS" --reuse "$REUSE" --dislocations 0.4 \
    --precision bf16 --init-from "$INIT" --channels "$CHANNELS" --first-sample "$FIRST" \
    --lr "$LR" --curriculum "$CURRICULUM" --val-every 1000
