"""Train Hand4Whole: `python train.py --config configs/stage1.py --workdir runs/stage1`.

Any config field can be overridden: `--config.batch_size=48 --config.lr=2e-4`.
Multi-host: on TPU pods and under SLURM `jax.distributed.initialize()` finds the
other processes itself; elsewhere pass --coordinator_address HOST:PORT,
--num_processes N and --process_id I on every host. A run resumes from the
newest checkpoint in --workdir automatically.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

# The repo root holds configs/ (imported by the config files as `configs.default`).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

config_flags.DEFINE_config_file('config', None, 'a configs/*.py file', lock_config=True)
flags.DEFINE_string('workdir', None, 'where checkpoints, logs and images go')
flags.DEFINE_string('coordinator_address', None, 'multi-process: HOST:PORT of process 0')
flags.DEFINE_integer('num_processes', None, 'multi-process: number of processes')
flags.DEFINE_integer('process_id', None, 'multi-process: this process, 0..num_processes-1')
flags.DEFINE_integer('num_cpu_devices', None, 'CPU only: pretend to have this many devices')
flags.DEFINE_integer('heartbeat_timeout_seconds', 100,
                     'multi-process: a process that sends no heartbeat this long counts as dead')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS['verbosity'].present:   # orbax and grain log every save at INFO
    logging.set_verbosity(logging.WARNING)
  import jax
  if FLAGS.num_cpu_devices:
    jax.config.update('jax_num_cpu_devices', FLAGS.num_cpu_devices)
  if FLAGS.coordinator_address or FLAGS.num_processes:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                               heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
  elif any(k in os.environ for k in ('SLURM_JOB_ID', 'TPU_WORKER_HOSTNAMES', 'MEGASCALE_COORDINATOR_ADDRESS')):
    jax.distributed.initialize(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
  cache = os.environ.get('H4W_JAX_CACHE', os.path.expanduser('~/.cache/h4w_jax/xla'))
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  from h4w_jax.common.config_checks import ConfigError, config_from_flag
  from h4w_datasets.pipeline import DataError
  from h4w_jax.training import checkpoints, loop
  try:
    loop.run(config_from_flag(FLAGS['config']), FLAGS.workdir)
  except (loop.TrainingError, ConfigError, checkpoints.CheckpointError, DataError) as e:
    print('\n'.join(f'error: {line}' for line in str(e).splitlines()), file=sys.stderr,
          flush=True)
    if jax.process_count() > 1:
      # Skip the distributed shutdown: it waits for every peer, and one may be dead.
      sys.stdout.flush()
      os._exit(1)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
