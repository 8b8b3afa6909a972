#!/usr/bin/env bash
# Session 11's GPU training: two runs side by side on the one lent GPU, each sized to the budget.
#
#   finetune: the shipped v2 trunk (16-32-64-128) fine-tuned from its weights on unseen crystals
#   wide:     the 32-64-128-256 trunk from scratch
#
# Both in bfloat16, batch 32, dislocations at every strain level (0.4); `--steps 0` sizes each
# cosine schedule to MINUTES from a probe on the device. Run from the repository root through the
# device tool (OUT is its return folder):
#
#   bash benchmarks/training/device_session.sh
#
# and as a CPU smoke test: OUT=/tmp/s DEVICE=cpu BATCH=1 PROBE=8 MINUTES=0.5 bash ...
set -u
: "${OUT:?OUT must name the folder of what comes back}"
MINUTES=${MINUTES:-8.5}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-32}
PROBE=${PROBE:-40}
export PYTHONUNBUFFERED=1 PYTHONPATH=. OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
common=(--device "$DEVICE" --minutes "$MINUTES" --steps 0 --probe-steps "$PROBE"
        --batch-size "$BATCH" --dislocations 0.4 --precision bf16)
python3 benchmarks/training/device_train.py --out "$OUT/finetune" --run-dir /tmp/bcdi-finetune \
    "${common[@]}" --init-from bcdi_stream/model/weights/bcdi-phase-v2.pt \
    --first-sample 1000000 --lr 1e-3 --curriculum 0 &
a=$!
python3 benchmarks/training/device_train.py --out "$OUT/wide" --run-dir /tmp/bcdi-wide \
    "${common[@]}" --channels 32,64,128,256 --first-sample 2000000 --lr 2e-3 --curriculum 0.3 &
b=$!
wait $a; ra=$?
wait $b; rb=$?
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null
rm -f "$OUT"/*/train.out  # the device tool returns 8 files; log.jsonl holds every validation
echo "finetune rc $ra, wide rc $rb"
exit $((ra || rb))
