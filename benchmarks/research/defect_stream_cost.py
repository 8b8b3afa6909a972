"""What dislocation loops (or networks) cost the training stream (what a device run waits for).

Times ``training_batches`` (batches of 32 after the curriculum, the device call's odds:
dislocations 0.4, faults 0.3) with the loop odds at 0 and at ``--loops``, on the same seeds
(the loops are drawn apart, so the other crystals are the same), alternating the two for
``--rounds`` rounds, one torch thread. With ``--networks P`` (session 23) the loops stay at
``--loops`` and the network odds (3–4 straight dislocations) alternate between 0 and P
instead. Prints one JSON line per batch and the ratio.

    python benchmarks/research/defect_stream_cost.py --rounds 3 --loops 0.2
    python benchmarks/research/defect_stream_cost.py --rounds 8 --loops 0.2 --networks 0.2
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=float, default=0.2)
    ap.add_argument("--networks", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from bcdi_stream.training import training_batches

    name = "loops" if args.networks is None else "networks"
    top = args.loops if args.networks is None else args.networks
    totals = {0.0: 0.0, top: 0.0}
    for r in range(args.rounds):
        for p in (0.0, top):
            odds = ({"loop_probability": p} if args.networks is None
                    else {"loop_probability": args.loops, "network_probability": p})
            stream = training_batches(7_000_000 + r * args.batch_size, args.batch_size, 10, 0.0,
                                      dislocation_probability=0.4, fault_probability=0.3,
                                      **odds)
            t0 = time.perf_counter()
            batch = next(stream)
            dt = time.perf_counter() - t0
            totals[p] += dt
            print(json.dumps({"round": r, name: p, "s": round(dt, 3),
                              "crystals": len(batch.seeds)}), flush=True)
    per = {p: totals[p] / (args.rounds * args.batch_size) for p in totals}
    print(f"s per crystal: {name} 0 {per[0.0]:.4f}, {name} {top} {per[top]:.4f} "
          f"({per[top] / per[0.0]:.2f}x)")


if __name__ == "__main__":
    main()
