"""Merge `bcdi-stream benchmark model --out` JSON files into one summary table.

    python benchmarks/merge_model_results.py benchmarks/results/model-cpu-*.json

Rows of the same crystal from several files are combined per method (a method scored twice
keeps the first file's figures). Speed-up and success ratios use only the crystals on which
AI+ER and the conventional recipe ran in the same process.
"""

from __future__ import annotations

import json
import sys

from bcdi_stream.benchmarking._model import MODEL_METHODS, format_summary, summarise


def main(paths: list[str]) -> None:
    rows: dict[tuple[str, int], dict] = {}
    for p in paths:
        for r in json.load(open(p))["rows"]:
            key = (r["class"], r["seed"])
            merged = rows.setdefault(key, {k: v for k, v in r.items() if k not in MODEL_METHODS})
            for m in MODEL_METHODS:
                if m in r and m not in merged:
                    merged[m] = r[m]
    summary = summarise(list(rows.values()))
    print(format_summary(summary))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
