"""Hand4Whole in JAX/Flax. The packages, and what each may import (tests/test_layout.py):

  common/      spaces, joint sets, dataset constants, mesh and sharding, drawing,
               MANO settings; shared by everything below.         imports: smplx_jax
  models/      the networks (ResNet, RoIAlign, Hand4Whole, the hand-only model of
               stage 2), their outputs and losses, the body-model targets.
                                                                  + common
  weights/     weights on disk: upstream snapshots, converted folders, training
               workdirs; key mapping, stage tools, `python -m h4w_jax.convert`.
                                                                  + models
  training/    tasks (model families), train state, the step, optimizer,
               checkpoints, logs, the loop behind train.py.       + weights, h4w_datasets
  evaluation/  metrics (whole body, hands), AGORA result files, the loops behind
               eval.py.
                                                                  + weights, h4w_datasets
  inference/   Predictor and the demo.                            + weights, h4w_datasets

training, evaluation and inference never import each other. The input
pipeline (`h4w_datasets`) imports only smplx_jax and h4w_jax.common.
`convert.py`, `demo.py` and `checkpointing.py` here are the command-line entry
points of 0.1 (`python -m h4w_jax.convert|demo|checkpointing`), kept as
aliases of weights.cli, inference.demo and training.checkpoints.
"""
