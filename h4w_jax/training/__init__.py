"""Training: the model families (tasks: whole body, or the hand-only model of stage 2),
the state and the jitted step (step), Adam with upstream's schedule (optim),
orbax checkpoints with the data iterator (checkpoints), TensorBoard and pictures (logs),
and the loop behind train.py (loop).

Imports h4w_jax.models, h4w_jax.weights, h4w_jax.common and h4w_datasets; never
evaluation or inference.
"""
