"""`python -m h4w_jax.checkpointing ...`: training checkpoints' command line
(h4w_jax.training.checkpoints)."""

import sys

from h4w_jax.training.checkpoints import main

if __name__ == '__main__':
  sys.exit(main())
