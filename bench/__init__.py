"""Benchmarks of dynamod at grid scale: a CMS-like inventory generator and a
harness that measures each cost side by side with its physical limit.

    python -m bench --scale small|medium|cms [--only NAME ...]
    python -m bench.generator --scale medium --store inventory.db
"""
