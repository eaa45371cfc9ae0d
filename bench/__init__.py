"""Every figure of docs/benchmarks.md: the job side by side with the tutorial's own pipeline.

docs/benchmarks.md, "Which file produces which row", maps each row to its command and module.

``python -m bench`` measures the input pipeline (a), training throughput (b) and whole-job
wall time (c) on the same data, settings and machine, and prints a table of ratios;
``python -m bench --gpu-synthetic`` times the full recipe on generated CIFAR-shaped data.
"""
