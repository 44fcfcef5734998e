"""Shared fixtures: synthetic body-model files, made once per test session."""

import os
import shutil
from pathlib import Path

import jax
import pytest

# Compiled functions are reused across runs (CI runs on the same machine).
jax.config.update('jax_compilation_cache_dir',
                  os.environ.get('H4W_JAX_CACHE', str(Path.home() / '.cache' / 'h4w_jax' / 'xla')))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def _synthetic_tree(tmp_path_factory, name, **kwargs):
  from smplx_jax import synthetic
  path = tmp_path_factory.mktemp(name)
  yield synthetic.write_human_model_files(path, seed=0, **kwargs)
  shutil.rmtree(path, ignore_errors=True)  # 1.6 GB: do not leave it in /tmp


@pytest.fixture(scope='session')
def human_model_files(tmp_path_factory) -> Path:
  """Synthetic files as the official ones: chumpy objects and sparse regressors."""
  yield from _synthetic_tree(tmp_path_factory, 'hmf')


@pytest.fixture(scope='session')
def clean_human_model_files(tmp_path_factory) -> Path:
  """The same files (same seed) as plain numpy pickles, which PyPI smplx reads."""
  yield from _synthetic_tree(tmp_path_factory, 'hmf_clean', chumpy=False)


@pytest.fixture(scope='session')
def hand_data_root(tmp_path_factory, clean_human_model_files) -> Path:
  """Synthetic mini FreiHAND, InterHand2.6M and MSCOCO-hand datasets (stage 2), 8 images each."""
  from h4w_datasets import synthetic
  root = tmp_path_factory.mktemp('hand_data')
  synthetic.write_mini_datasets(root, clean_human_model_files, num=8, task='hand')
  return root


NUMERICAL_PACKAGES = ('jax', 'jaxlib', 'numpy', 'scipy', 'opencv-python-headless', 'torch', 'smplx',
                      'flax', 'optax', 'orbax-checkpoint', 'grain', 'pillow', 'ml-dtypes')


def numerical_versions() -> str:
  from importlib import metadata
  versions = []
  for name in NUMERICAL_PACKAGES:
    try:
      versions.append(f'{name} {metadata.version(name)}')
    except metadata.PackageNotFoundError:
      versions.append(f'{name} absent')
  return ', '.join(versions)


def pytest_sessionstart(session):
  """The resolved versions of the numerical dependencies, first thing in every run (also under
  -q), so that a failure on a new machine shows what moved (goldens: tests/data/README.md)."""
  reporter = session.config.pluginmanager.get_plugin('terminalreporter')
  if reporter is not None:
    reporter.write_line(f'numerical dependencies: {numerical_versions()}')
