"""Cost of one phasing iteration against the FFT pair (see bcdi_stream/benchmarking/_iteration.py).

    python benchmarks/bench_iteration.py [--sizes 64 128] [--batch 1 4 20] [--threads 1]
"""

from bcdi_stream.benchmarking._iteration import main

if __name__ == "__main__":
    main()
