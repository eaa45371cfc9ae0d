"""Side-by-side benchmarks of the job against the tutorial's own pipeline (``make bench``).

``python -m bench`` measures the input pipeline (a), training throughput (b) and whole-job
wall time (c) on the same data, settings and machine, and prints a table of ratios;
``python -m bench --gpu-synthetic`` times the full recipe on generated CIFAR-shaped data.
"""
