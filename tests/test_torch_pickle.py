"""torch.save files read and written without torch, checked against real torch."""

import collections
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch

from h4w_jax.weights import torch_pickle
from smplx_jax.safe_pickle import UnsafePickleError


def _sample():
  """A snapshot-like object: shared storages, views, several dtypes, an optimizer."""
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
  net(torch.randn(2, 2, 5, 5)).sum().backward()  # num_batches_tracked = 1
  optimizer = torch.optim.Adam(net.parameters())
  optimizer.step()  # per-parameter state: step, exp_avg, exp_avg_sq tensors
  tensors = collections.OrderedDict(
      base=base, transposed=base.t(), column=base[1:, 2], row=base[2],
      half=torch.randn(3, 2).half(), bf16=torch.randn(5).bfloat16(),
      long=torch.arange(-3, 3), flags=torch.tensor([True, False, True]),
      scalar=torch.tensor(7), empty=torch.zeros(0, 3))
  return {'epoch': 6, 'network': net.state_dict(), 'tensors': tensors,
          'optimizer': optimizer.state_dict()}


def _same(ours, theirs):
  """Recursively: arrays equal tensors (value, dtype, shape), the rest equal."""
  if isinstance(theirs, torch.Tensor):
    assert isinstance(ours, np.ndarray)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert str(ours.dtype) == str(theirs.dtype).removeprefix('torch.')
    if theirs.dtype == torch.bfloat16:  # numpy's bfloat16 (ml_dtypes) is unknown to torch
      ours, theirs = ours.astype(np.float32), theirs.float()
    assert torch.equal(torch.from_numpy(ours), theirs)
  elif isinstance(theirs, dict):
    assert type(ours) is type(theirs) and list(ours) == list(theirs)
    for k in theirs:
      _same(ours[k], theirs[k])
  elif isinstance(theirs, (list, tuple)):
    assert type(ours) is type(theirs) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
      _same(a, b)
  else:
    assert ours == theirs


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_reads_torch_save(tmp_path, zip_format):
  obj = _sample()
  path = tmp_path / 'snapshot_6.pth.tar'
  torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
  loaded = torch_pickle.load(path)
  _same(loaded, obj)
  assert isinstance(loaded['network'], collections.OrderedDict)
  assert loaded['network']['1.num_batches_tracked'] == 1
  # Views come back as independent copies, not windows into one buffer.
  assert loaded['tensors']['column'].flags.owndata
  assert loaded['tensors']['transposed'].flags.c_contiguous


def test_reads_big_endian_storages(tmp_path):
  path = tmp_path / 'be.pth'
  torch.save({'x': torch.arange(5, dtype=torch.float32)}, path)
  # Rewrite the archive as a big-endian machine would have written it.
  with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / 'big.pth', 'w') as dst:
    for info in src.infolist():
      data = src.read(info)
      if info.filename.endswith('/byteorder'):
        data = b'big'
      elif '/data/' in info.filename:
        data = np.frombuffer(data, '<f4').astype('>f4').tobytes()
      dst.writestr(info.filename, data)
  x = torch_pickle.load(tmp_path / 'big.pth')['x']
  np.testing.assert_array_equal(x, np.arange(5, dtype=np.float32))
  assert x.dtype == np.float32 and x.dtype.isnative


def test_written_files_load_in_torch(tmp_path):
  rng = np.random.default_rng(0)
  network = collections.OrderedDict(
      [('module.conv.weight', rng.normal(size=(4, 3, 2, 2)).astype(np.float32)),
       ('module.fc.weight', rng.normal(size=(5, 6)).astype(np.float32).T),  # not contiguous
       ('module.bn.num_batches_tracked', np.asarray(123, np.int64)),
       ('module.half', np.arange(6, dtype=np.float16).reshape(2, 3)),
       ('module.flags', np.array([True, False])),
       ('module.empty', np.zeros((0, 2), np.float32)),
       ('module.big_endian', np.arange(3, dtype='>f8'))])
  obj = {'epoch': 7, 'network': network,
         'misc': [None, True, -1, 300, 70000, -(2 ** 31), 2 ** 40, 1.5, 'ü', (1, 2, 3, 4), ()],
         'scalar': np.float32(0.25)}
  path = tmp_path / 'out.pth.tar'
  torch_pickle.save(path, obj)
  for weights_only in (True, False):
    back = torch.load(path, weights_only=weights_only)
    assert back['epoch'] == 7 and back['scalar'] == 0.25
    assert back['misc'] == obj['misc']
    assert isinstance(back['network'], collections.OrderedDict)
    assert list(back['network']) == list(network)
    for k, v in network.items():
      t = back['network'][k]
      assert tuple(t.shape) == v.shape and t.is_contiguous()
      np.testing.assert_array_equal(t.numpy(), v)
      assert t.numpy().dtype == v.dtype.newbyteorder('=')
  assert torch.load(path, mmap=True, weights_only=True)['network']['module.conv.weight'].sum() \
      == pytest.approx(float(network['module.conv.weight'].sum()), rel=1e-6)
  _same(torch_pickle.load(path)['network'], torch.load(path, weights_only=True)['network'])


def test_written_records_are_aligned(tmp_path):
  path = tmp_path / 'out.pth'
  torch_pickle.save(path, {'a': np.ones(3, np.float32), 'b': np.ones((5, 7), np.int64)})
  raw = path.read_bytes()
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    for info in archive.infolist():
      start = info.header_offset
      name_len, extra_len = struct.unpack('<HH', raw[start + 26:start + 30])
      assert (start + 30 + name_len + extra_len) % 64 == 0, info.filename
    assert archive.read('archive/version') == b'3\n'
    assert archive.read('archive/byteorder') == b'little'
  assert {'archive/data.pkl', 'archive/data/0', 'archive/data/1'} <= set(names)


class _RunsCode:
  """Unpickling this runs a shell command (pickle names it posix.system)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    import os
    return (os.system, (f'touch {self.marker}',))


def _zip_with_pickle(path, pickled: bytes):
  """A torch-style archive whose data.pkl is `pickled`."""
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickled)
    archive.writestr('archive/version', b'3\n')


def _os_system_pickle(marker) -> bytes:
  """A protocol-2 stream calling os.system('touch marker') by the name `os system`."""
  command = f'touch {marker}'.encode()
  return (b'\x80\x02cos\nsystem\nX' + struct.pack('<I', len(command)) + command +
          b'\x85R.')


def test_refuses_code_in_the_pickle(tmp_path):
  marker = tmp_path / 'ran'
  crafted = _os_system_pickle(marker)
  pickle.loads(crafted)  # the payload is live: plain pickle runs it
  assert marker.exists()
  marker.unlink()

  path = tmp_path / 'evil.pth.tar'
  _zip_with_pickle(path, crafted)
  with pytest.raises(UnsafePickleError, match=r'evil\.pth\.tar.*os\.system'):
    torch_pickle.load(path)

  torch.save({'network': _RunsCode(marker)}, tmp_path / 'evil2.pth')  # what torch.save writes
  with pytest.raises(UnsafePickleError, match=r'evil2\.pth.*posix\.system'):
    torch_pickle.load(tmp_path / 'evil2.pth')

  _zip_with_pickle(tmp_path / 'eval.pth', b'\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.')
  with pytest.raises(UnsafePickleError, match=r'builtins\.eval'):
    torch_pickle.load(tmp_path / 'eval.pth')
  assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path):
  path = tmp_path / 'snapshot_6.pth.tar'
  torch.save({'epoch': 1, 'network': {'w': torch.ones(1000)}}, path)
  raw = path.read_bytes()
  (tmp_path / 'cut.pth.tar').write_bytes(raw[:len(raw) // 2])
  with pytest.raises(ValueError, match=r'cut\.pth\.tar: truncated or corrupt zip'):
    torch_pickle.load(tmp_path / 'cut.pth.tar')

  torch.save({'w': torch.ones(1000)}, path, _use_new_zipfile_serialization=False)
  raw = path.read_bytes()
  (tmp_path / 'cut_legacy.pth').write_bytes(raw[:-100])
  with pytest.raises(ValueError, match=r'cut_legacy\.pth: truncated'):
    torch_pickle.load(tmp_path / 'cut_legacy.pth')

  (tmp_path / 'notes.txt').write_text('hello')
  with pytest.raises(ValueError, match=r'notes\.txt: not a torch\.save file'):
    torch_pickle.load(tmp_path / 'notes.txt')
  with zipfile.ZipFile(tmp_path / 'other.zip', 'w') as archive:
    archive.writestr('readme.txt', 'x')
  with pytest.raises(ValueError, match=r'other\.zip: a zip archive but not a torch\.save file'):
    torch_pickle.load(tmp_path / 'other.zip')


def test_view_outside_its_storage_is_an_error(tmp_path):
  path = tmp_path / 'x.pth'
  torch_pickle.save(path, {'w': np.arange(4, dtype=np.float32)})
  with zipfile.ZipFile(path) as archive:
    records = {n: archive.read(n) for n in archive.namelist()}
  records['archive/data/0'] = records['archive/data/0'][:8]  # 2 of 4 elements left
  with zipfile.ZipFile(tmp_path / 'short.pth', 'w') as archive:
    for name, data in records.items():
      archive.writestr(name, data)
  with pytest.raises(ValueError, match=r'short\.pth: storage archive/data/0 holds 8 bytes'):
    torch_pickle.load(tmp_path / 'short.pth')
