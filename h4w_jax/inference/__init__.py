"""Inference: `Predictor` (weights and body models in, upstream's test-mode outputs out),
`HandPredictor` (the same for the hand-only model of stage 2) and the demo
(`python -m h4w_jax.demo`) with what it is made of: `detect` / `ssdlite` (who is in the
picture), `media` (pictures and videos in), `tracking`, `smoothing` and `export` (OBJ,
parameters, AMASS-style motion).

Imports h4w_jax.models, h4w_jax.weights, h4w_jax.common and the input pipeline's
preprocessing; never training or evaluation.
"""

from h4w_jax.inference.predictor import HandPredictor, Predictor

__all__ = ['HandPredictor', 'Predictor']
