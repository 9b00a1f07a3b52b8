"""Pure-Python core of the MNIST dashboard: data, models, training, inference. Never imports streamlit."""
