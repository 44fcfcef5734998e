"""Reading model files: official formats, extras, and clear errors for bad files."""

import pickle
import shutil
import zipfile

import numpy as np
import pytest

import smplx_jax
from smplx_jax import check, extras, model_files, safe_pickle


class _RunsCode:
  """Unpickling this calls os.system: a reader must refuse before running it."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    import os
    return (os.system, (f'touch {self.marker}',))


def _copy_smplx(src, dst, gender='NEUTRAL', ext='npz'):
  (dst / 'smplx').mkdir(parents=True, exist_ok=True)
  path = dst / 'smplx' / f'SMPLX_{gender}.{ext}'
  shutil.copy(src / 'smplx' / path.name, path)
  return path


def test_official_pickles_need_no_chumpy(human_model_files):
  raw = (human_model_files / 'smpl' / 'SMPL_NEUTRAL.pkl').read_bytes()
  with pytest.raises(ModuleNotFoundError, match='chumpy'):
    pickle.loads(raw, encoding='latin1')  # what plain pickle does without chumpy
  data = model_files.load(human_model_files / 'smpl' / 'SMPL_NEUTRAL.pkl', 'smpl')
  assert data['J_regressor'].shape == (24, 6890)  # sparse matrix made dense
  assert isinstance(data['shapedirs'], np.ndarray)


def test_official_and_clean_files_hold_the_same_arrays(human_model_files,
                                                       clean_human_model_files):
  for rel, schema in (('smpl/SMPL_MALE.pkl', 'smpl'), ('mano/MANO_LEFT.pkl', 'mano'),
                      ('flame/FLAME_NEUTRAL.pkl', 'flame')):
    ours = model_files.load(human_model_files / rel, schema)
    theirs = model_files.load(clean_human_model_files / rel, schema)
    for key in ours:
      np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f'{rel} {key}')


def test_npz_object_arrays_are_never_unpickled(human_model_files):
  reader = safe_pickle.NpzReader(human_model_files / 'smplx' / 'SMPLX_NEUTRAL.npz')
  names = set(reader)
  assert 'v_template' in names
  # The official npz carries pickled dicts (joint2num, part2num) that we skip.
  object_keys = [k for k in names if k in ('joint2num', 'part2num')]
  assert object_keys, 'the synthetic npz should carry the official object arrays'


def test_extras(human_model_files):
  smplx_dir = human_model_files / 'smplx'
  j14 = extras.load_j14_regressor(smplx_dir)
  assert j14.shape == (14, 10475)
  np.testing.assert_allclose(j14.sum(1), 1, atol=1e-5)
  hands = extras.load_hand_vertex_ids(smplx_dir)
  assert hands['left_hand'].shape == hands['right_hand'].shape == (778,)
  assert extras.load_face_vertex_ids(smplx_dir).shape == (5023,)


@pytest.mark.parametrize('suffix', ['pkl', 'npy'])
def test_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path, suffix):
  marker = tmp_path / 'ran'
  if suffix == 'pkl':
    path = tmp_path / 'smplx' / extras.J14_FILE
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    load = lambda: extras.load_j14_regressor(path.parent)
  else:
    path = tmp_path / 'flame_dynamic_embedding.npy'
    np.save(path, np.array(_RunsCode(marker), dtype=object), allow_pickle=True)
    load = lambda: model_files.load(path, 'flame_dynamic_embedding')
  with pytest.raises(model_files.ModelFileError, match=r'posix\.system|os\.system'):
    load()
  assert not marker.exists()


def test_truncated_files_name_the_file(human_model_files, tmp_path):
  npz = _copy_smplx(human_model_files, tmp_path)
  npz.write_bytes(npz.read_bytes()[:100_000])
  with pytest.raises(model_files.ModelFileError, match='SMPLX_NEUTRAL.npz'):
    smplx_jax.create(tmp_path, 'smplx')
  pkl = tmp_path / 'smpl' / 'SMPL_NEUTRAL.pkl'
  pkl.parent.mkdir()
  pkl.write_bytes((human_model_files / 'smpl' / 'SMPL_NEUTRAL.pkl').read_bytes()[:5000])
  with pytest.raises(model_files.ModelFileError, match='SMPL_NEUTRAL.pkl.*truncated'):
    smplx_jax.create(tmp_path, 'smpl')


def _rewrite_npz(path, **changes):
  with np.load(path, allow_pickle=True) as data:
    arrays = {k: data[k] for k in data.files}
  for key, value in changes.items():
    if value is None:
      del arrays[key]
    else:
      arrays[key] = value
  np.savez(path, **arrays)


def test_wrong_shapes_and_missing_keys_are_listed(human_model_files, tmp_path):
  npz = _copy_smplx(human_model_files, tmp_path)
  _rewrite_npz(npz, weights=np.zeros((10475, 54)), hands_meanl=None)
  with pytest.raises(model_files.ModelFileError) as info:
    smplx_jax.create(tmp_path, 'smplx')
  message = str(info.value)
  assert 'SMPLX_NEUTRAL.npz' in message
  assert "'weights'" in message and '(10475, 54)' in message
  assert "missing key 'hands_meanl'" in message


def test_nan_and_bad_face_indices_are_caught(human_model_files, tmp_path):
  npz = _copy_smplx(human_model_files, tmp_path)
  with np.load(npz) as data:
    template, faces = data['v_template'].copy(), data['f'].copy()
  template[3, 0] = np.nan
  faces[0, 0] = 10475
  _rewrite_npz(npz, v_template=template, f=faces)
  with pytest.raises(model_files.ModelFileError, match="v_template.*NaN.*'f': vertex index"):
    smplx_jax.create(tmp_path, 'smplx')


def test_missing_and_foreign_paths(tmp_path):
  with pytest.raises(model_files.ModelFileError, match='smplx_jax.check'):
    smplx_jax.create(tmp_path, 'smplx')
  with pytest.raises(model_files.ModelFileError, match='no such file or folder'):
    smplx_jax.create(tmp_path / 'nowhere', 'smplx')
  foreign = tmp_path / 'model.zip'
  with zipfile.ZipFile(foreign, 'w') as z:
    z.writestr('a.txt', 'x')
  with pytest.raises(ValueError, match='model type'):
    smplx_jax.create(foreign)


def test_checker_reports_each_file(human_model_files, tmp_path, capsys):
  assert check.main([str(human_model_files), '--need', 'all']) == 0
  out = capsys.readouterr().out
  assert out.count(' ok ') >= 17 and 'MISSING' not in out

  partial = tmp_path / 'hmf'
  npz = _copy_smplx(human_model_files, partial)
  _rewrite_npz(npz, posedirs=np.zeros((10475, 3, 10)))
  assert check.main([str(partial)]) == 1
  out = capsys.readouterr().out
  assert 'MALFORMED' in out and 'posedirs' in out
  assert 'MISSING   smplx/SMPLX_MALE.npz' in out and 'smpl-x.is.tue.mpg.de' in out
  assert 'MISSING   mano/MANO_LEFT.pkl' in out and 'mano.is.tue.mpg.de' in out
