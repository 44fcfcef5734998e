"""`python -m h4w_jax.convert ...`: the converter's command line (h4w_jax.weights.cli)."""

import sys

from h4w_jax.weights.cli import main

if __name__ == '__main__':
  sys.exit(main())
