"""Every figure of docs/benchmarks.md ("Which file produces which row" maps each row to its
command and module): the job side by side with the tutorial's pipeline, the GPU campaign, the
search at scale, the reproduction of the tutorial's accuracy."""
