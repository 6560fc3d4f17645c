"""Side-by-side benchmarks of tune-digits against the per-item DataLoader pipeline of course notebooks.

    python -m benchmarks.run --quick                 # the real FSDD recordings, under 3 minutes
    python -m benchmarks.run --data DIR --json out.json
    python -m benchmarks.run --full DIR              # only the feature cache of a full-size corpus
    bash benchmarks/gpu_check.sh                     # one CUDA GPU, without Ray

See ``benchmarks/README.md`` for what each number means.
"""
