"""Snapshot <-> Flax conversion: the naming rule on upstream's 834 keys, strictness,
the command line end to end against real torch, and the stage tools."""

import collections
import json
import struct
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from h4w_jax.weights import cli, files, keys, stages
from smplx_jax.safe_pickle import UnsafePickleError

# Every key of upstream's DataParallel(Model).state_dict() with shape and dtype,
# derived from upstream's code (copied from shared/spec/state_dict_manifest.json).
MANIFEST = json.loads((Path(__file__).parent / 'data' / 'state_dict_manifest.json').read_text())

# SPEC_MODEL.md §13: keys and parameter elements per top-level module.
SPEC_COUNTS = {
    'backbone': (318, 23_508_032), 'body_position_net': (2, 409_800),
    'body_rotation_net': (29, 5_420_445), 'box_net': (32, 11_506_185),
    'hand_roi_net': (318, 23_508_032), 'hand_position_net': (2, 327_840),
    'hand_rotation_net': (9, 1_977_202), 'face_roi_net': (120, 11_176_512),
    'face_regressor': (4, 8_208)}


def manifest_target(manifest=MANIFEST):
  """The Flax variable shapes the rule gives for upstream's keys (what the model declares)."""
  flat = {}
  for key, spec in manifest.items():
    if key.endswith('.num_batches_tracked'):
      continue
    path = keys.flax_path(key, len(spec['shape']))
    assert path is not None and path not in flat, key  # every key maps, none collide
    shape = keys.to_flax_layout(np.empty(spec['shape'], np.bool_)).shape
    flat[path] = jax.ShapeDtypeStruct(shape, np.dtype(spec['dtype']))
  return keys.nest(flat)


def pattern_state_dict(manifest=MANIFEST, prefix_from=None, prefix_to=''):
  """Arrays of the manifest's shapes; key i holds i, i + 1, ... (no two keys alike)."""
  out = collections.OrderedDict()
  for i, (key, spec) in enumerate(manifest.items()):
    if prefix_from is not None:
      if not key.startswith(prefix_from):
        continue
      key = prefix_to + key[len(prefix_from):]
    if key.endswith('.num_batches_tracked'):
      out[key] = np.asarray(1000 + i, np.int64)
    else:
      n = int(np.prod(spec['shape']))
      out[key] = (np.arange(n, dtype=np.float32) + i).reshape(spec['shape'])
  return out


@pytest.fixture(scope='module')
def target():
  return manifest_target()


@pytest.fixture(scope='module')
def state_dict():
  return pattern_state_dict()


@pytest.fixture(scope='module')
def variables(state_dict, target):
  return keys.torch_to_flax(state_dict, target)


def _flat(tree):
  return dict(keys.leaves(tree))


def _assert_trees_equal(a, b):
  fa, fb = _flat(a), _flat(b)
  assert set(fa) == set(fb)
  for path in fa:
    assert np.asarray(fa[path]).dtype == np.asarray(fb[path]).dtype, path
    np.testing.assert_array_equal(np.asarray(fa[path]), np.asarray(fb[path]), err_msg=str(path))


# ---------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('key, ndim, path', [
    ('module.backbone.layer1.0.conv1.weight', 4, 'params/backbone/layer1_0/conv1/kernel'),
    ('module.backbone.layer2.0.downsample.0.weight', 4,
     'params/backbone/layer2_0/downsample_0/kernel'),
    ('module.backbone.layer2.0.downsample.1.weight', 1,
     'params/backbone/layer2_0/downsample_1/scale'),
    ('module.backbone.bn1.running_mean', 1, 'batch_stats/backbone/bn1/mean'),
    ('module.backbone.bn1.running_var', 1, 'batch_stats/backbone/bn1/var'),
    ('module.body_position_net.conv.0.bias', 1, 'params/body_position_net/conv_0/bias'),
    ('module.body_rotation_net.body_conv.1.weight', 1,
     'params/body_rotation_net/body_conv_1/scale'),
    ('module.body_rotation_net.root_pose_out.0.weight', 2,
     'params/body_rotation_net/root_pose_out_0/kernel'),
    ('module.box_net.deconv.3.weight', 4, 'params/box_net/deconv_3/kernel'),
    ('module.box_net.lhand_size.2.weight', 2, 'params/box_net/lhand_size_2/kernel'),
    ('module.hand_roi_net.backbone.conv1.weight', 4, 'params/hand_roi_net/backbone/conv1/kernel'),
    ('module.face_regressor.expr_out.0.bias', 1, 'params/face_regressor/expr_out_0/bias'),
    ('backbone.conv1.weight', 4, 'params/backbone/conv1/kernel'),  # without DataParallel
])
def test_rule_examples(key, ndim, path):
  assert '/'.join(keys.flax_path(key, ndim)) == path
  assert keys.torch_key(path.split('/'), prefix='') == key.removeprefix('module.')
  assert keys.flax_path('module.backbone.bn1.num_batches_tracked', 0) is None


def test_rule_maps_all_upstream_keys(target):
  paths = _flat(target)
  assert len(paths) == 834 - 133  # the BN counters are not variables
  assert sum(p[0] == 'params' for p in paths) == 435
  assert sum(p[0] == 'batch_stats' for p in paths) == 2 * 133
  for path in paths:  # the inverse names each variable by its upstream key
    assert keys.torch_key(path) in MANIFEST
  assert {name: (n, size) for name, n, size in cli.summarize(target)} == SPEC_COUNTS


def test_layouts(state_dict, variables):
  params = variables['params']
  w = state_dict['module.backbone.conv1.weight']  # Conv2d (O, I, kh, kw)
  k = params['backbone']['conv1']['kernel']
  assert k.shape == (7, 7, 3, 64) and k[1, 2, 0, 5] == w[5, 0, 1, 2]
  w = state_dict['module.box_net.deconv.0.weight']  # ConvTranspose2d (I, O, kh, kw)
  k = params['box_net']['deconv_0']['kernel']
  assert k.shape == (4, 4, 256, 2248) and k[3, 1, 7, 100] == w[100, 7, 3, 1]
  w = state_dict['module.box_net.lhand_size.2.weight']  # Linear (out, in)
  np.testing.assert_array_equal(params['box_net']['lhand_size_2']['kernel'], w.T)
  assert all(np.asarray(v).flags.c_contiguous for v in _flat(variables).values())


def test_round_trip_is_exact(state_dict, variables):
  back = keys.flax_to_torch(variables, keys.batches_tracked(state_dict))
  assert list(back) == list(MANIFEST)  # torch's order too
  for key, value in state_dict.items():
    assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
    np.testing.assert_array_equal(back[key], value, err_msg=key)
  zeros = keys.flax_to_torch(variables)
  assert zeros['module.backbone.bn1.num_batches_tracked'] == 0
  assert zeros['module.backbone.bn1.num_batches_tracked'].dtype == np.int64


def test_strict_lists_every_problem(state_dict, target):
  broken = collections.OrderedDict(state_dict)
  del broken['module.backbone.layer3.2.conv2.weight']
  del broken['module.face_roi_net.backbone.bn1.running_var']
  broken['module.box_net.extra.0.weight'] = np.zeros((2, 2), np.float32)
  broken['module.backbone.fc.bias'] = np.zeros(3, np.float32)
  broken['module.face_regressor.expr_out.0.weight'] = np.zeros((11, 512), np.float32)
  broken['module.backbone.bn1.num_batches_tracked'] = np.zeros(2, np.float32)
  broken['module.smplx_layer.shapedirs'] = np.zeros(3, np.float32)  # skipped, as upstream
  with pytest.raises(keys.ConversionError) as info:
    keys.torch_to_flax(broken, target, where='snap.pth.tar')
  e = info.value
  assert e.unexpected == ['module.box_net.extra.0.weight', 'module.backbone.fc.bias']
  assert e.missing == [
      'params/backbone/layer3_2/conv2/kernel (from module.backbone.layer3.2.conv2.weight)',
      'batch_stats/face_roi_net/backbone/bn1/var '
      '(from module.face_roi_net.backbone.bn1.running_var)']
  assert len(e.mismatched) == 2
  message = str(e)
  assert message.startswith('snap.pth.tar: ')
  for text in ('module.box_net.extra.0.weight', 'module.backbone.fc.bias', 'layer3_2/conv2',
               'module.face_regressor.expr_out.0.weight: (11, 512) in the file, the model '
               'needs (10, 512)', 'num_batches_tracked: float32 (2,)'):
    assert text in message


def test_other_collections_and_names_are_refused(variables):
  with pytest.raises(ValueError, match='collections'):
    keys.flax_to_torch({**variables, 'cache': {}})
  with pytest.raises(ValueError, match='params/head/embedding'):
    keys.flax_to_torch({'params': {'head': {'embedding': np.zeros((3, 2))}}})


# ---------------------------------------------------------------------------
# Files: snapshots, checkpoints, command line
# ---------------------------------------------------------------------------

def test_load_snapshot_forms(tmp_path):
  net = collections.OrderedDict(w=torch.ones(2, 3))
  torch.save({'epoch': 6, 'network': net, 'optimizer': {'state': {}}}, tmp_path / 'a.pth.tar')
  state_dict, epoch, extras = files.load_snapshot(tmp_path / 'a.pth.tar')
  assert epoch == 6 and list(extras) == ['optimizer']
  # A raw state dict (what convert_simple_to_pose2pose.py reads) has no epoch.
  torch.save(collections.OrderedDict([('conv1.weight', torch.ones(1))]), tmp_path / 'raw.pth')
  state_dict, epoch, extras = files.load_snapshot(tmp_path / 'raw.pth')
  assert list(state_dict) == ['conv1.weight'] and epoch is None and extras == {}
  torch.save({'epoch': 1, 'model': {}}, tmp_path / 'b.pth')
  with pytest.raises(ValueError, match=r'b\.pth: a dict without a "network" entry'):
    files.load_snapshot(tmp_path / 'b.pth')
  torch.save([1, 2], tmp_path / 'c.pth')
  with pytest.raises(ValueError, match=r'c\.pth: holds a list, not a checkpoint'):
    files.load_snapshot(tmp_path / 'c.pth')
  torch.save({'network': {'w': 3}}, tmp_path / 'd.pth')
  with pytest.raises(ValueError, match='"network" entry is not a state dict'):
    files.load_snapshot(tmp_path / 'd.pth')


def test_cli_end_to_end(tmp_path, monkeypatch, capsys, state_dict, target):
  monkeypatch.setattr(cli, 'model_variable_shapes', lambda config=None: target)
  snapshot = tmp_path / 'snapshot_6.pth.tar'
  network = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state_dict.items())
  network['module.smplx_layer.betas'] = torch.zeros(1, 10)  # upstream deletes these
  optimizer = {'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.zeros(2)}},
               'param_groups': [{'lr': 1e-4, 'params': [0]}]}
  torch.save({'epoch': 6, 'network': network, 'optimizer': optimizer}, snapshot)

  assert cli.main([str(snapshot), str(tmp_path / 'ckpt')]) == 0
  out = capsys.readouterr().out
  assert 'epoch: 6' in out and "not converted: 'optimizer'" in out
  assert 'hand_roi_net' in out and '23,508,032' in out and '77,842,256' in out
  variables, meta = files.load_checkpoint(tmp_path / 'ckpt')
  assert meta['epoch'] == 6 and meta['source'] == str(snapshot)
  _assert_trees_equal(variables, keys.torch_to_flax(state_dict, target))

  exported = tmp_path / 'back.pth.tar'
  assert cli.main(['--to-torch', str(tmp_path / 'ckpt'), str(exported)]) == 0
  back = torch.load(exported, weights_only=True)
  assert back['epoch'] == 6 and set(back) == {'epoch', 'network'}
  # Orbax restores dicts sorted by name: keys come back grouped per module,
  # in torch's order inside each, and torch loads by name.
  assert set(back['network']) == set(state_dict)
  assert list(back['network'])[:5] == [f'module.backbone.bn1.{n}' for n in (
      'weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')]
  for key, value in state_dict.items():
    assert torch.equal(back['network'][key], torch.from_numpy(value)), key

  # Refuses to overwrite.
  assert cli.main([str(snapshot), str(tmp_path / 'ckpt')]) == 1
  assert 'already holds a checkpoint' in capsys.readouterr().err


def test_cli_reports_mismatch(tmp_path, monkeypatch, capsys, target):
  monkeypatch.setattr(cli, 'model_variable_shapes', lambda config=None: target)
  torch.save({'epoch': 1, 'network': {'module.backbone.conv1.weight': torch.zeros(64, 3, 7, 7)}},
             tmp_path / 'part.pth.tar')
  assert cli.main([str(tmp_path / 'part.pth.tar'), str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err
  # The depths are read off the keys first: a file without a whole backbone is one sentence.
  assert err == (f'error: {tmp_path / "part.pth.tar"}: backbone: a basic ResNet with (0, 0, 0, 0) '
                 'blocks per stage is none of depths [10, 18, 50]\n')
  assert not (tmp_path / 'out').exists()


def test_cli_refuses_malicious_snapshot(tmp_path, capsys):
  marker = tmp_path / 'ran'
  command = f'touch {marker}'.encode()
  with zipfile.ZipFile(tmp_path / 'snapshot_6.pth.tar', 'w') as archive:
    archive.writestr('archive/data.pkl', b'\x80\x02cos\nsystem\nX' +
                     struct.pack('<I', len(command)) + command + b'\x85R.')
    archive.writestr('archive/version', b'3\n')
  assert cli.main([str(tmp_path / 'snapshot_6.pth.tar'), str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err
  assert 'snapshot_6.pth.tar' in err and 'os.system' in err
  assert not marker.exists() and not (tmp_path / 'out').exists()
  with pytest.raises(UnsafePickleError):
    files.load_snapshot(tmp_path / 'snapshot_6.pth.tar')


# ---------------------------------------------------------------------------
# Stage tools
# ---------------------------------------------------------------------------

def _toy(offset=0.0):
  """A small model with the modules merge_hand touches (and BatchNorms)."""
  def conv(shape):
    return {'kernel': np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + offset,
            'bias': np.full(shape[-1], offset, np.float32)}

  def bn(n):
    return ({'scale': np.full(n, 1 + offset, np.float32), 'bias': np.full(n, offset, np.float32)},
            {'mean': np.full(n, offset, np.float32), 'var': np.full(n, 2 + offset, np.float32)})

  bn_params, bn_stats = bn(4)
  backbone = {'conv1': conv((3, 3, 2, 4)), 'bn1': bn_params, 'layer1_0': {'bn1': bn_params}}
  stats = {'bn1': bn_stats, 'layer1_0': {'bn1': bn_stats}}
  return {'params': {'backbone': backbone, 'hand_roi_net': {'backbone': backbone},
                     'hand_position_net': {'conv_0': conv((1, 1, 4, 6))},
                     'hand_rotation_net': {'hand_conv_1': bn_params,
                                           'hand_pose_out_0': conv((6, 5))}},
          'batch_stats': {'backbone': stats, 'hand_roi_net': {'backbone': stats},
                          'hand_rotation_net': {'hand_conv_1': bn_stats}}}


def test_reset_epoch(tmp_path, capsys):
  body = _toy(1.0)
  files.save_checkpoint(tmp_path / 'six', body, 6, num_batches_tracked={'module.x': 5},
                          notes={'hand_source': 'h.pth'})
  assert cli.main(['reset-epoch', str(tmp_path / 'six'), str(tmp_path / 'zero')]) == 0
  variables, meta = files.load_checkpoint(tmp_path / 'zero')
  assert meta['epoch'] == 0 and meta['num_batches_tracked'] == {'module.x': 5}
  assert meta['hand_source'] == 'h.pth'
  _assert_trees_equal(variables, body)
  assert files.load_checkpoint(tmp_path / 'six')[1]['epoch'] == 6


def test_merge_hand(tmp_path):
  body, init, hand_model = _toy(1.0), _toy(2.0), _toy(3.0)
  hand_backbone = keys.flax_to_torch(keys.subtree(hand_model, ('backbone',)), 7,
                                        prefix='module.backbone.')
  # The released hand snapshot's naming, and what Pose2Pose saves (quirk Q12).
  released = {**{'module.hand_backbone.' + k[len('module.backbone.'):]: v
                 for k, v in hand_backbone.items()},
              'module.hand_position_net.conv.0.weight': np.zeros((6, 4, 1, 1), np.float32)}
  pose2pose = {**hand_backbone, 'module.position_net.conv.0.weight': np.zeros(1)}

  merged = stages.merge_hand(body, released, init)
  for module, source in [(('hand_roi_net', 'backbone'), keys.subtree(hand_model, ('backbone',))),
                         (('hand_position_net',), keys.subtree(init, ('hand_position_net',))),
                         (('hand_rotation_net',), keys.subtree(init, ('hand_rotation_net',))),
                         (('backbone',), keys.subtree(body, ('backbone',)))]:
    _assert_trees_equal(keys.subtree(merged, module), source)
  assert set(_flat(merged)) == set(_flat(body))

  with pytest.raises(ValueError, match=r'no key starts with module\.hand_backbone\..*--fix-prefix'):
    stages.merge_hand(body, pose2pose, init)
  _assert_trees_equal(stages.merge_hand(body, pose2pose, init, fix_prefix=True), merged)
  with pytest.raises(ValueError, match='ambiguous'):
    stages.merge_hand(body, {**released, **pose2pose}, init, fix_prefix=True)
  incomplete = {k: v for k, v in released.items() if 'layer1' not in k}
  with pytest.raises(keys.ConversionError,
                     match=r'layer1_0/bn1/scale \(from layer1\.0\.bn1\.weight\)'):
    stages.merge_hand(body, incomplete, init)

  # Command line: body and init checkpoints, the hand as a torch snapshot.
  files.save_checkpoint(tmp_path / 'body', body, 6)
  files.save_checkpoint(tmp_path / 'init', init, None)
  torch.save({'epoch': 12, 'network': {k: torch.from_numpy(np.asarray(v))
                                       for k, v in pose2pose.items()}}, tmp_path / 'hand.pth.tar')
  args = [str(tmp_path / 'body'), str(tmp_path / 'hand.pth.tar'), str(tmp_path / 'merged'),
          '--init', str(tmp_path / 'init')]
  assert cli.main(['merge-hand'] + args) == 1  # Pose2Pose naming needs the flag
  assert cli.main(['merge-hand'] + args + ['--fix-prefix']) == 0
  variables, meta = files.load_checkpoint(tmp_path / 'merged')
  assert meta['epoch'] == 0 and meta['reinitialised'] == ['hand_position_net', 'hand_rotation_net']
  _assert_trees_equal(variables, merged)

  # Without --init the heads get upstream's init_weights: N(0, 0.001) convs,
  # N(0, 0.01) linears, zero biases, BatchNorm 1/0 with fresh statistics.
  assert cli.main(['merge-hand'] + args[:2] + [str(tmp_path / 'merged_default'),
                                                  '--fix-prefix']) == 0
  variables, meta = files.load_checkpoint(tmp_path / 'merged_default')
  assert 'init_weights' in meta['init_source']
  _assert_trees_equal(keys.subtree(variables, ('hand_roi_net', 'backbone')),
                      keys.subtree(merged, ('hand_roi_net', 'backbone')))
  for path, value in _flat(keys.subtree(variables, ('hand_position_net',))).items():
    assert value.shape == _flat(keys.subtree(body, ('hand_position_net',)))[path].shape
  heads = {**_flat(keys.subtree(variables, ('hand_position_net',))),
           **_flat(keys.subtree(variables, ('hand_rotation_net',)))}
  for path, value in heads.items():
    name = path[-1]
    if name == 'kernel':
      assert np.abs(value).max() < (0.006 if value.ndim == 4 else 0.06) and value.std() > 0
    else:
      np.testing.assert_array_equal(value, 1.0 if name in ('scale', 'var') else 0.0)


def test_import_torchvision_resnet(target):
  cases = [(50, 'module.backbone.', ('backbone',)),
           (18, 'module.face_roi_net.backbone.', ('face_roi_net', 'backbone'))]
  for depth, prefix, module in cases:
    torchvision = pattern_state_dict(prefix_from=prefix)
    torchvision['fc.weight'] = np.zeros((1000, 2048 if depth == 50 else 512), np.float32)
    torchvision['fc.bias'] = np.zeros(1000, np.float32)
    # The default target is our ResNet module: this checks its names against upstream's.
    backbone, dropped = stages.import_torchvision_resnet(torchvision, depth)
    assert dropped == ['fc.weight', 'fc.bias']
    expected = keys.subtree(keys.torch_to_flax(pattern_state_dict(), target), module)
    _assert_trees_equal(backbone, expected)

  del torchvision['layer4.1.bn2.weight']
  with pytest.raises(keys.ConversionError, match='layer4_1/bn2/scale'):
    stages.import_torchvision_resnet(torchvision, 18)


def test_import_pose_resnet():
  pose = pattern_state_dict(prefix_from='module.backbone.', prefix_to='module.')
  pose['module.deconv_layers.0.weight'] = np.zeros((2048, 256, 4, 4), np.float32)
  pose['module.final_layer.weight'] = np.zeros((17, 256, 1, 1), np.float32)
  backbone, dropped = stages.import_pose_resnet(pose, target=stages.resnet_shapes(50))
  assert dropped == ['deconv_layers.0.weight', 'final_layer.weight']
  _assert_trees_equal(backbone, stages.import_torchvision_resnet(
      pattern_state_dict(prefix_from='module.backbone.'), 50)[0])


def test_model_declares_the_upstream_variables(target):
  """h4w_jax.model names every variable by the rule: the CLI's default target is the manifest's."""
  real = _flat(cli.model_variable_shapes())
  expected = _flat(target)
  assert set(real) == set(expected)
  for path, leaf in expected.items():
    assert (tuple(real[path].shape), real[path].dtype) == (leaf.shape, leaf.dtype), path
