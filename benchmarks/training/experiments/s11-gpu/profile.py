"""The profile of session 11's second device call, as it ran (output: profile.txt beside it).

    PYTHONPATH=. OMP_NUM_THREADS=16 python3 \\
        benchmarks/training/experiments/s11-gpu/profile.py

Times a batch of 32 simulated crystals (``training_batches`` on the GPU) against the network's
optimiser step for two trunks in two precisions. ``bcdi-stream benchmark training --device cuda``
now measures the same on any machine (step rows and stream rows).
"""

import cProfile
import pstats
import time

import torch

from bcdi_stream.model import ModelConfig, PhaseModel, UNetConfig
from bcdi_stream.training import TrainConfig, batch_losses, training_batches

torch.backends.cudnn.benchmark = True
it = training_batches(3000000, 32, 10**6, 0.0, 64, device="cuda", strong_share=0.5,
                      dislocation_probability=0.4)
b = next(it)
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(5):
    b = next(it)
torch.cuda.synchronize()
print("data s/batch32", (time.perf_counter() - t) / 5, flush=True)
pr = cProfile.Profile()
pr.enable()
b = next(it)
torch.cuda.synchronize()
pr.disable()
pstats.Stats(pr).sort_stats("cumulative").print_stats(18)
for ch in [(16, 32, 64, 128), (32, 64, 128, 256)]:
    for prec in ["bf16", "fp32"]:
        cfg = TrainConfig(model=ModelConfig(unet=UNetConfig(channels=ch)), precision=prec,
                          device="cuda")
        m = PhaseModel(cfg.model).cuda().to(memory_format=torch.channels_last_3d)
        opt = torch.optim.AdamW(m.parameters())

        def step() -> None:
            loss, _, _ = batch_losses(m, b, cfg)  # noqa: B023 - run at once, in this loop
            opt.zero_grad()  # noqa: B023
            loss.backward()
            opt.step()  # noqa: B023

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            step()
        torch.cuda.synchronize()
        print(ch, prec, "model s/step32", (time.perf_counter() - t) / 10, flush=True)
