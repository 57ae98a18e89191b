"""Executors of a sweep's points, registered by name (fewshot/sweep/registry.py): `local` (a process pool on
this machine) and `slurm` / `submitit-local` (submitit jobs)."""
