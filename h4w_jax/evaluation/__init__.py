"""Evaluation: upstream's metrics as batched JAX functions (metrics), AGORA's result files
(agora_files), and the loop behind eval.py (loop); for the hand-only model of stage 2 the
FreiHAND and InterHand2.6M metrics (hand_metrics) and their loop (hand_loop).

Imports h4w_jax.models, h4w_jax.weights, h4w_jax.common and h4w_datasets; never
training or inference.
"""
