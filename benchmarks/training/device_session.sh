#!/usr/bin/env bash
# The prepared GPU training call for a session lent a device machine (one call of <= 10 min).
#
# Session 11 (H200) found the simulator, not the network, sets a GPU run's pace (0.65 s per
# batch of 32 against 0.02 s for the network step; docs/MODEL_RESEARCH.md). This call therefore
# simulates in WORKERS CPU processes and shows each simulated batch REUSE times under grid
# symmetries, and trains the 32-64-128-256 trunk from scratch in bfloat16, batch 32, with
# dislocations in 40 % of every class; `--steps 0` sizes the cosine schedule to MINUTES from a
# probe on the device. Run from the repository root through the device tool (OUT is its return
# folder), with timeout_s 600:
#
#   bash benchmarks/training/device_session.sh
#
# and as a CPU smoke test: OUT=/tmp/s DEVICE=cpu BATCH=1 PROBE=8 MINUTES=0.5 WORKERS=1 bash ...
# (Session 11's first call ran an earlier version of this file: two runs side by side, without
# workers or reuse; see git history and the research log.)
set -u
: "${OUT:?OUT must name the folder of what comes back}"
MINUTES=${MINUTES:-8.5}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-32}
PROBE=${PROBE:-40}
WORKERS=${WORKERS:-15}
REUSE=${REUSE:-4}
export PYTHONUNBUFFERED=1 PYTHONPATH=. OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 benchmarks/training/device_train.py --out "$OUT/wide" --run-dir /tmp/bcdi-wide \
    --device "$DEVICE" --minutes "$MINUTES" --steps 0 --probe-steps "$PROBE" \
    --batch-size "$BATCH" --workers "$WORKERS" --reuse "$REUSE" --dislocations 0.4 \
    --precision bf16 --channels 32,64,128,256 --first-sample 4000000 --lr 2e-3 \
    --curriculum 0.3 --val-every 500
