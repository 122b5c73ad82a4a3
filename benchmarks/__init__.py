"""Side-by-side benchmarks of otree, supervisord and a bare fork+exec floor.

Run ``python -m benchmarks.run [--quick]`` from the repository root; see
docs/performance.md.
"""
