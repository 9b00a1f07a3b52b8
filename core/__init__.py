"""Pure-Python core of the MNIST dashboard: data, models, training, inference. Never imports streamlit."""

import os

# How long torch's OpenMP threads (GNU libgomp) spin before they sleep, waiting for the next parallel op.
# libgomp's default spins 300,000 times: when other processes hold the cores, every barrier then waits
# for a descheduled spinner (measured: 200 seed002 steps with 2 threads beside two busy processes, 6.8 s;
# never spinning, OMP_WAIT_POLICY=PASSIVE, 3.5 s). Never spinning costs as much on an idle machine, where
# small ops follow each other closely (a seed002 epoch 7.1-7.6 s against 4.1-4.5 s). 20,000 spins: 4.2 s
# for the idle epoch, 4.7 s for the 200 busy steps, slower there than never spinning but far from 6.8 s;
# and runs with threads 0 take one thread on a busy machine anyway (core.training.engine.free_cores).
# It only takes effect if set before torch is first imported, so entry points (python -m core, app.py,
# tests) import core first; a value already set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")
