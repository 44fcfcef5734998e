"""Weights on disk, without torch: upstream snapshots, converted folders, training workdirs.

keys (torch <-> Flax names and layouts, strict), files (reading and writing every
format; `load_variables` is the entry point evaluation and inference share),
stages (upstream's tool/*.py: reset-epoch, merge-hand, backbone imports, a run's
initial weights), cli (`python -m h4w_jax.convert`), torch_pickle (the allow-list
reader and writer of .pth files). Imports h4w_jax.models and below.
"""
