"""`python -m h4w_jax.demo ...`: the demo's command line (h4w_jax.inference.demo)."""

import sys

from h4w_jax.inference.demo import main

if __name__ == '__main__':
  sys.exit(main())
