"""Pure-Python core of the MNIST dashboard: data, models, training, inference. Never imports streamlit."""

import os

# OpenMP worker threads that spin while they wait collapse torch's CPU throughput 10-25x when other
# processes share the cores (measured: fastcnn, batch 64, 2 threads, load ~8 on 2 cores: ~1000 ms
# vs ~75 ms a step). Sleeping waits cost little on an idle machine. It only takes effect if set
# before torch is first imported, so entry points (python -m core, app.py, tests) should import
# core first or set it themselves.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
