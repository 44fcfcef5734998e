"""chex shape and dtype checks at the API edges: Predictor, the train batch, smplx_jax.forward.

Each check must name the argument (or batch field) in its message, and a correct
input must still pass (smplx's broadcasting, unbatched inputs and (..., N, 3)
poses: tests/test_smplx_transforms.py).
"""

import jax
import numpy as np
import pytest

import smplx_jax
from h4w_datasets import example as ex
from h4w_datasets import pipeline
from h4w_jax.inference import Predictor
from h4w_jax.training import inputs
from fake_datasets import FAKE_INFO_3D, FakeReader


def test_predictor_names_bad_images():
  predictor = Predictor(variables=None, layer=None)   # the check runs before the network
  with pytest.raises(ValueError, match=r'Predictor images must be \(B, 512, 384, 3\)'):
    predictor(np.zeros((2, 384, 512, 3), np.float32))
  with pytest.raises(ValueError, match=r'Predictor images must be \(B, 512, 384, 3\)'):
    predictor(np.zeros((512, 384, 3), np.float32))
  with pytest.raises(ValueError, match='Predictor images must be float.*divide by 255'):
    predictor(np.zeros((1, 512, 384, 3), np.uint8))


@pytest.fixture(scope='module')
def batch(tmp_path_factory):
  reader = FakeReader(tmp_path_factory.mktemp('fake'), 4, FAKE_INFO_3D, seed=1)
  ds, _ = pipeline.build([[reader]], pipeline.PipelineConfig(local_batch=2, read_threads=1))
  return next(iter(ds))


def test_pipeline_batches_fit_the_example_spec(batch):
  assert set(ex.example_spec()) == pipeline.train_keys()
  inputs.check_batch(batch, 2)


@pytest.mark.parametrize('change, message', [
    (lambda b: b.pop('joint_trunc'), r"missing fields \['joint_trunc'\]"),
    (lambda b: b.update(joint_img=b['joint_img'][:, :136]), 'train batch field joint_img'),
    (lambda b: b.update(img=b['img'].astype(np.float64)), 'train batch field img'),
    (lambda b: b.update(smplx_gender=b['smplx_gender'].astype(np.int64)),
     'train batch field smplx_gender'),
    (lambda b: b.update(rot=b['rot'][:1]), 'train batch field rot'),
])
def test_check_batch_names_the_field(batch, change, message):
  bad = dict(batch)
  change(bad)
  with pytest.raises(ValueError, match=message):
    inputs.check_batch(bad, 2)


def test_float_crops_pass_when_configured(batch):
  floats = dict(batch, img=batch['img'].astype(np.float32))
  inputs.check_batch(floats, 2, 'float32')
  with pytest.raises(ValueError, match='train batch field img'):
    inputs.check_batch(floats, 2)


def test_smplx_forward_names_the_argument_and_keeps_smplx_semantics(human_model_files):
  model = smplx_jax.create(human_model_files, 'smplx', use_pca=False)
  with pytest.raises(ValueError, match=r'SMPL-X input body_pose has shape \(2, 60\); '
                     r'expected \(\.\.\., 63\) or \(\.\.\., 21, 3\)'):
    model(body_pose=np.zeros((2, 60), np.float32))
  with pytest.raises(ValueError, match='SMPL-X input betas must be floating point, got int64'):
    model(betas=np.zeros((2, 10), np.int64))
  with pytest.raises(ValueError, match='SMPL-X input jaw_pose'):   # checked while tracing
    jax.jit(lambda m, p: m(jaw_pose=p))(model, np.zeros((2, 4), np.float32))
  with pytest.raises(ValueError, match='do not broadcast'):
    model(betas=np.zeros((3, 10), np.float32), body_pose=np.zeros((2, 63), np.float32))
