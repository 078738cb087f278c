"""Preflight: `python -m launch.preflight --flagfile=RECIPE --dataset_dir=... --model_dir=...`,
started the way training starts (`horovodrun -np N -H ...`, `mpirun`, or one process), says in
about a minute whether every host is ready for the run and how fast each part will be.

Every worker runs the same probes, each under its own time limit (probes.py): the software (the
packages of the lane's lock, Horovod's build, this project's source), the device (the dtype
`--dtype=auto` gives, oneDNN, threads), the data (the listing of dataset_dir, record counts, a
sample decoded), the model_dir (writable by rank 0, free space against what the run writes,
shared or per host), one train step at the recipe's micro-batch on synthetic input (its memory,
or the largest micro-batch that fits), the input pipeline's rate on the real data, and the
all-reduce of the net's gradient across all workers. Rank 0 gathers them, names every
difference and every blocker by host, rank and check (verdicts.py), prints one table and writes
it as JSON to model_dir/preflight.json (report.py), the only file the command leaves. Exit 0:
ready; 1: a blocker (training would fail or hang), or flags training would refuse; 3: a worker
did not answer, named by rank, host and process where the launcher serves a key-value store
(roll_call.py); 7: an error of the preflight itself, in one line.
"""
