"""What the accelerators we do not have would run, checked on this CPU.

* The train step, the Predictor and the evaluation's network and metrics lower for
  `cuda` and `tpu` (`lowering_platforms`) with no host callback, no CPU-only custom
  call and no float64 (common.hlo.portability_problems).
* Every matmul of smplx_jax and of the training targets asks for HIGHEST precision
  in the lowered StableHLO: on TPU DEFAULT means one bf16 pass, which moved SMPL-X
  joints by up to 4.6 mm (measured when batch_rodrigues still used DEFAULT).
* With compute_dtype bfloat16 the network's outputs (geometric heads, camera) are
  float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from h4w_datasets import pipeline
from h4w_jax.common import hlo, sharding
from h4w_jax.models import hand4whole, outputs, targets

PLATFORMS = ('cuda', 'tpu')
SMALL = hand4whole.ModelConfig(body_depth=10, hand_depth=10, face_depth=10)


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype), tree)


@pytest.fixture(scope='module')
def layer(clean_human_model_files):
  return outputs.smplx_layer(clean_human_model_files)


def _lower(fn, *args):
  return jax.jit(fn).trace(*args).lower(lowering_platforms=PLATFORMS).as_text()


def test_train_step_lowers_for_accelerators(layer):
  import ml_collections
  from configs import default
  config = default.get_config()
  config.model = ml_collections.ConfigDict(dict(body_depth=10, hand_depth=10, face_depth=10,
                                                fix_lhand_flip=False, remat='blocks'))
  config.batch_size = 2
  config.compute_dtype = 'bfloat16'
  from h4w_jax.training import loop
  mesh = sharding.make_mesh(config.mesh)
  parts = loop.make_parts(config, mesh, steps_per_epoch=10)
  batch = {k: jax.ShapeDtypeStruct(s, d)
           for k, (s, d) in pipeline.train_batch_spec(config.batch_size).items()}
  args = (parts.abstract_state, batch, _abstract(layer),
          _abstract(targets.smplx_joints(layer)), jax.ShapeDtypeStruct((), bool))
  with jax.set_mesh(mesh):
    text = parts.step_fn.trace(*args).lower(lowering_platforms=PLATFORMS).as_text()
  assert hlo.portability_problems(text) == []
  assert 'stablehlo.convolution' in text and 'bf16' in text


def test_predictor_and_evaluation_lower_for_accelerators(layer, clean_human_model_files):
  from h4w_jax.evaluation import loop as eval_loop
  from h4w_jax.evaluation import metrics
  from h4w_jax.inference import predictor
  variables = hand4whole.variable_shapes(SMALL)
  images = jax.ShapeDtypeStruct((2, 512, 384, 3), jnp.float32)
  text = predictor._predict.trace(SMALL, variables, _abstract(layer), images).lower(
      lowering_platforms=PLATFORMS).as_text()
  assert hlo.portability_problems(text) == []
  net = eval_loop.net_fn(SMALL)
  out = jax.eval_shape(net, variables, images, jax.ShapeDtypeStruct((2, 3), jnp.float32))
  text = net.trace(variables, images, jax.ShapeDtypeStruct((2, 3), jnp.float32)).lower(
      lowering_platforms=PLATFORMS).as_text()
  assert hlo.portability_problems(text) == []
  consts = {'layer': _abstract(layer),
            'eval_model': _abstract(metrics.load_eval_model(clean_human_model_files, layer))}
  batch = {'smplx_mesh_cam': jax.ShapeDtypeStruct((2, 10475, 3), jnp.float32),
           'sample_valid': jax.ShapeDtypeStruct((2,), jnp.float32),
           'index': jax.ShapeDtypeStruct((2,), jnp.int32)}
  text = eval_loop.finish.trace(out, batch, consts, dataset='EHF', has_gt=True).lower(
      lowering_platforms=PLATFORMS).as_text()
  assert hlo.portability_problems(text) == []


def test_problems_are_found():
  """The check sees a host callback and float64 (so an empty list means something)."""
  def with_callback(x):
    return jax.pure_callback(lambda v: v, jax.ShapeDtypeStruct((3,), jnp.float32), x)
  text = jax.jit(with_callback).lower(jnp.zeros(3)).as_text()
  assert any('host-only' in p for p in hlo.portability_problems(text))
  with pytest.raises(Exception, match='platform'):   # a callback cannot even lower for cuda
    _lower(with_callback, jax.ShapeDtypeStruct((3,), jnp.float32))
  assert hlo.portability_problems('%0 = stablehlo.add %a, %b : tensor<3xf64>') == \
      ['float64 values']


def test_body_model_and_targets_multiply_at_highest(layer):
  batch = {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in pipeline.train_batch_spec(2).items()}
  counts = hlo.dot_precisions(jax.jit(targets.train_batch).lower(
      _abstract(targets.smplx_joints(layer)), batch).as_text())
  assert set(counts) == {'HIGHEST'} and counts['HIGHEST'] > 5, counts
  counts = hlo.dot_precisions(jax.jit(targets.train_batch).lower(_abstract(layer), batch).as_text())
  assert set(counts) == {'HIGHEST'}, counts
  pose = jax.ShapeDtypeStruct((2, 63), jnp.float32)
  counts = hlo.dot_precisions(jax.jit(lambda m, p: m(body_pose=p).vertices).lower(
      _abstract(layer), pose).as_text())
  assert set(counts) == {'HIGHEST'} and counts['HIGHEST'] > 5, counts
  grad = jax.jit(jax.grad(lambda p, m: jnp.sum(m(body_pose=p).joints)))
  counts = hlo.dot_precisions(grad.lower(pose, _abstract(layer)).as_text())
  assert set(counts) == {'HIGHEST'}, counts


def test_default_precision_would_be_seen():
  text = jax.jit(lambda a, b: a @ b).lower(jnp.zeros((3, 3)), jnp.zeros((3, 3))).as_text()
  assert hlo.dot_precisions(text) == {'DEFAULT': 1}


def test_bfloat16_network_outputs_are_float32():
  config = hand4whole.ModelConfig(body_depth=10, hand_depth=10, face_depth=10, dtype='bfloat16')
  variables = hand4whole.variable_shapes(config)
  out = jax.eval_shape(lambda v, x: hand4whole.Hand4Whole(config).apply(v, x, train=False),
                       variables, jax.ShapeDtypeStruct((1, 512, 384, 3), jnp.float32))
  assert {x.dtype for x in jax.tree.leaves(out)} == {jnp.dtype(jnp.float32)}
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
