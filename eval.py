"""Evaluate Hand4Whole: `python eval.py --config configs/eval_ehf.py --checkpoint CKPT`.

CKPT is a converted checkpoint folder (`python -m h4w_jax.convert`), an
upstream `snapshot_<N>.pth.tar`, or a training workdir (its newest orbax
checkpoint); its backbone depths are read off the weights (config.model's depths are not
used). Any config field can be overridden: `--config.batch_size=128`.
Results go to --out (default results/); h4w_jax/evaluate.py says what is
written and how each dataset is scored.
"""

import os
import sys

import jax

# The repo root holds configs/ (imported by the config files as `configs.default`).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from h4w_jax.evaluation.loop import EvalError, run  # noqa: E402  (after the path insert)

# ---------------------------------------------------------------------------
# Command line


def _define_flags():
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file('config', None, 'a configs/eval_*.py file', lock_config=True)
  flags.DEFINE_string('checkpoint', None, 'converted checkpoint folder, upstream .pth.tar, or '
                      'training workdir')
  flags.DEFINE_string('out', 'results', 'folder for the JSON, per-sample metrics and AGORA files')
  flags.DEFINE_string('coordinator_address', None, 'multi-process: HOST:PORT of process 0')
  flags.DEFINE_integer('num_processes', None, 'multi-process: number of processes')
  flags.DEFINE_integer('process_id', None, 'multi-process: this process, 0..num_processes-1')
  flags.DEFINE_integer('num_cpu_devices', None, 'CPU only: pretend to have this many devices')
  flags.mark_flags_as_required(['config', 'checkpoint'])
  return flags.FLAGS


def main(argv):
  del argv
  from absl import flags, logging
  FLAGS = flags.FLAGS
  if not FLAGS['verbosity'].present:   # orbax and grain log at INFO
    logging.set_verbosity(logging.WARNING)
  if FLAGS.num_cpu_devices:
    jax.config.update('jax_num_cpu_devices', FLAGS.num_cpu_devices)
  if FLAGS.coordinator_address or FLAGS.num_processes:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif any(k in os.environ for k in ('SLURM_JOB_ID', 'TPU_WORKER_HOSTNAMES',
                                     'MEGASCALE_COORDINATOR_ADDRESS')):
    jax.distributed.initialize()
  cache = os.environ.get('H4W_JAX_CACHE', os.path.expanduser('~/.cache/h4w_jax/xla'))
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  from h4w_jax.common.config_checks import ConfigError, config_from_flag
  try:
    run(config_from_flag(FLAGS['config']), FLAGS.checkpoint, FLAGS.out)
  except (EvalError, ConfigError) as e:
    print('\n'.join(f'error: {line}' for line in str(e).splitlines()), file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  from absl import app
  _define_flags()
  app.run(main)
