"""Synthetic SMPL-X / SMPL / MANO / FLAME files (smplx_jax.synthetic)."""

import contextlib
import filecmp
import io
import pickle
import pickletools
import shutil
import warnings

import numpy as np
import pytest
from scipy import sparse
from smplx.vertex_ids import vertex_ids as smplx_vertex_ids

from smplx_jax import synthetic as syn

# The reference ids are the PyPI smplx package's own.
SMPLX_SPECIAL = smplx_vertex_ids['smplx']
SMPL_SPECIAL = smplx_vertex_ids['smplh']
MANO_TIPS = dict(thumb=(744, 745), index=(320, 317), middle=(443, 444, 445),
                 ring=(554, 556), pinky=(671, 673))

ALL_FILES = [
    'smplx/SMPLX_NEUTRAL.npz', 'smplx/SMPLX_MALE.npz', 'smplx/SMPLX_FEMALE.npz',
    'smplx/SMPLX_NEUTRAL.pkl', 'smplx/SMPLX_MALE.pkl', 'smplx/SMPLX_FEMALE.pkl',
    'smplx/SMPLX_to_J14.pkl', 'smplx/MANO_SMPLX_vertex_ids.pkl',
    'smplx/SMPL-X__FLAME_vertex_ids.npy',
    'smpl/SMPL_NEUTRAL.pkl', 'smpl/SMPL_MALE.pkl', 'smpl/SMPL_FEMALE.pkl',
    'mano/MANO_LEFT.pkl', 'mano/MANO_RIGHT.pkl',
    'flame/FLAME_NEUTRAL.pkl', 'flame/flame_static_embedding.pkl',
    'flame/flame_dynamic_embedding.npy',
]


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path = tmp_path_factory.mktemp('synthetic')
  yield path
  shutil.rmtree(path, ignore_errors=True)  # about 1.6 GB per generated tree


@pytest.fixture(scope='module')
def official(human_model_files):
  """Default call (conftest): chumpy-style SMPL/MANO/FLAME pickles."""
  return human_model_files


@pytest.fixture(scope='module')
def clean(clean_human_model_files):
  """chumpy=False (conftest): cleaned pickles."""
  return clean_human_model_files


@pytest.fixture(scope='module')
def cli_run(workdir):
  """Another call, same seed, through the command line: cleaned pickles."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rc = syn._main([str(workdir / 'clean'), '--seed', '0', '--no-chumpy'])
  assert rc == 0
  return workdir / 'clean', out.getvalue()


def _pkl(path):
  with open(path, 'rb') as f:
    return pickle.load(f, encoding='latin1')


@pytest.fixture(scope='module')
def smplx_npz(clean):
  with np.load(clean / 'smplx' / 'SMPLX_NEUTRAL.npz', allow_pickle=True) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='module')
def models(clean):
  return {
      'smpl': _pkl(clean / 'smpl' / 'SMPL_NEUTRAL.pkl'),
      'mano_r': _pkl(clean / 'mano' / 'MANO_RIGHT.pkl'),
      'mano_l': _pkl(clean / 'mano' / 'MANO_LEFT.pkl'),
      'flame': _pkl(clean / 'flame' / 'FLAME_NEUTRAL.pkl'),
  }


# ---------------------------------------------------------------------- helpers
def _check_mesh(v, f, closed_components_positive=True):
  v = np.asarray(v, np.float64)
  f = np.asarray(f, np.int64)
  nv = len(v)
  assert f.min() >= 0 and f.max() < nv
  used = np.zeros(nv, bool)
  used[f.ravel()] = True
  assert used.all(), 'unreferenced vertices'
  area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
  assert area.min() > 1e-9, 'degenerate faces'
  assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 0] != f[:, 2]).all()
  # consistent orientation: every directed edge is used by at most one face
  e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
  key = e[:, 0] * nv + e[:, 1]
  assert len(np.unique(key)) == len(key), 'inconsistent winding / non-manifold edge'
  # outward: positive signed volume
  vol = np.einsum('ij,ij->i', v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
  assert vol > 0
  return vol


def _check_regressor(r, lo=1, hi=16):
  r = r.toarray() if sparse.issparse(r) else np.asarray(r)
  assert (r >= 0).all()
  np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-9)
  nnz = (r > 0).sum(1)
  assert nnz.min() >= lo and nnz.max() <= hi
  return r


def _check_weights(w):
  assert (w >= 0).all()
  np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-9)
  assert (w > 0).sum(1).max() <= 4


# ------------------------------------------------------------------------ tests
def test_layout(official, clean):
  for root in (official, clean):
    for rel in ALL_FILES:
      assert (root / rel).is_file(), rel
    written = sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())
    assert written == sorted(ALL_FILES + [syn.MARKER])   # the marker: a complete set
    assert syn.status(root) == 'complete'


def test_smplx_keys_shapes_dtypes(clean, smplx_npz):
  d = smplx_npz
  expect = {
      'v_template': ((10475, 3), np.float64), 'f': ((20908, 3), np.uint32),
      'shapedirs': ((10475, 3, 400), np.float64), 'posedirs': ((10475, 3, 486), np.float64),
      'J_regressor': ((55, 10475), np.float64), 'kintree_table': ((2, 55), np.int64),
      'weights': ((10475, 55), np.float64),
      'hands_componentsl': ((45, 45), np.float64), 'hands_componentsr': ((45, 45), np.float64),
      'hands_meanl': ((45,), np.float64), 'hands_meanr': ((45,), np.float64),
      'lmk_faces_idx': ((51,), np.int64), 'lmk_bary_coords': ((51, 3), np.float64),
      'dynamic_lmk_faces_idx': ((79, 17), np.int64),
      'dynamic_lmk_bary_coords': ((79, 17, 3), np.float64),
      'ft': ((20908, 3), np.uint32),
  }
  for k, (shape, dtype) in expect.items():
    assert d[k].shape == shape and d[k].dtype == dtype, k
  assert d['hands_coeffsl'].shape[1] == 45 and d['hands_coeffsr'].shape[1] == 45
  assert d['vt'].ndim == 2 and d['vt'].shape[1] == 2 and d['ft'].max() < len(d['vt'])
  for k in ('joint2num', 'part2num'):
    assert d[k].dtype == object and d[k].shape == () and isinstance(d[k][()], dict)
  assert d['joint2num'][()]['left_wrist'] == 20
  # the object arrays are the only entries that need allow_pickle
  with np.load(clean / 'smplx' / 'SMPLX_NEUTRAL.npz', allow_pickle=False) as z:
    assert z['v_template'].shape == (10475, 3)
    with pytest.raises(ValueError):
      z['joint2num']
  kt = d['kintree_table']
  assert kt[0, 0] == 4294967295 and (kt[1] == np.arange(55)).all()
  assert tuple(kt[0, 1:]) == syn.SMPLX_PARENTS[1:]
  for side in 'lr':
    c = d['hands_components' + side]
    np.testing.assert_allclose(c @ c.T, np.eye(45), atol=1e-10)
    m = np.abs(d['hands_mean' + side]).reshape(15, 3).max(1)
    assert 0.1 <= m.max() <= 0.35 and m.min() > 0.0
  # pkl holds the same dict (plain dicts instead of 0-d object arrays)
  p = _pkl(clean / 'smplx' / 'SMPLX_NEUTRAL.pkl')
  assert set(p) == set(d)
  assert p['joint2num'] == d['joint2num'][()]
  for k in ('v_template', 'f', 'shapedirs', 'J_regressor', 'lmk_faces_idx'):
    np.testing.assert_array_equal(p[k], d[k])


def test_other_model_shapes(models):
  spec = {
      'smpl': (6890, 13776, 10, 207, 24, syn.SMPL_PARENTS),
      'mano_r': (778, 1538, 10, 135, 16, syn.MANO_PARENTS),
      'mano_l': (778, 1538, 10, 135, 16, syn.MANO_PARENTS),
      'flame': (5023, 9976, 400, 36, 5, syn.FLAME_PARENTS),
  }
  for name, (nv, nf, ns, npd, nj, parents) in spec.items():
    m = models[name]
    assert m['v_template'].shape == (nv, 3) and m['v_template'].dtype == np.float64
    assert m['f'].shape == (nf, 3) and m['f'].dtype == np.uint32
    assert m['shapedirs'].shape == (nv, 3, ns)
    assert m['posedirs'].shape == (nv, 3, npd)
    assert isinstance(m['J_regressor'], sparse.csc_matrix) and m['J_regressor'].shape == (nj, nv)
    assert m['weights'].shape == (nv, nj) and m['J'].shape == (nj, 3)
    assert m['kintree_table'].dtype == np.int64 and m['kintree_table'][0, 0] == 4294967295
    assert tuple(m['kintree_table'][0, 1:]) == parents[1:]
    assert m['bs_style'] == 'lbs' and m['bs_type'] == 'lrotmin'
    np.testing.assert_allclose(m['J'], m['J_regressor'] @ m['v_template'], atol=1e-12)
  for side in ('mano_r', 'mano_l'):
    m = models[side]
    assert m['hands_components'].shape == (45, 45) and m['hands_mean'].shape == (45,)
    assert m['hands_coeffs'].shape[1] == 45


def test_meshes_are_valid(smplx_npz, models):
  vol = _check_mesh(smplx_npz['v_template'], smplx_npz['f'])
  assert 0.04 < vol < 0.09  # m^3, a ~65 kg human
  _check_mesh(models['smpl']['v_template'], models['smpl']['f'])
  # open meshes (MANO wrist, FLAME neck/mouth): orientation still consistent
  for name in ('mano_r', 'mano_l', 'flame'):
    _check_mesh(models[name]['v_template'], models[name]['f'])


def test_left_mano_mirrors_right(models):
  r, l = models['mano_r'], models['mano_l']
  np.testing.assert_allclose(l['v_template'], r['v_template'] * (-1, 1, 1))
  np.testing.assert_array_equal(l['f'], r['f'][:, ::-1])
  np.testing.assert_allclose(l['J'], r['J'] * (-1, 1, 1), atol=1e-12)
  np.testing.assert_allclose(l['shapedirs'][:, 0], -r['shapedirs'][:, 0])
  ext = np.ptp(r['v_template'], axis=0)
  assert 0.17 < ext[0] < 0.22  # ~19 cm long hand, fingers along -x
  assert np.linalg.norm(r['J'][0]) < 1e-3  # right wrist at the origin
  assert (r['v_template'][:, 0] < 0.02).all()


def test_regressors_and_weights(clean, smplx_npz, models):
  v = smplx_npz['v_template']
  jr = _check_regressor(smplx_npz['J_regressor'], lo=4)
  _check_weights(smplx_npz['weights'])
  j = jr @ v
  assert np.abs(j[0]).max() < 0.03  # pelvis near the origin
  assert (j[[1, 4, 7, 10, 13, 16, 18, 20, 23]][:, 0] > 0).all()  # left = +x
  assert (j[[2, 5, 8, 11, 14, 17, 19, 21, 24]][:, 0] < 0).all()
  pairs = [(1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (23, 24)]
  for a, b in pairs + [(25 + k, 40 + k) for k in range(15)]:
    np.testing.assert_allclose(j[a], j[b] * (-1, 1, 1), atol=1e-3)  # mirror symmetric
  parents = syn.SMPLX_PARENTS
  assert j[15, 1] > j[12, 1] > j[9, 1] > j[6, 1] > j[3, 1] > j[0, 1] > j[1, 1] > j[4, 1] > j[7, 1]
  assert j[20, 0] > j[18, 0] > j[16, 0] > j[13, 0] > 0
  for k in range(25, 40):  # finger joints run distally along +x (thumb also forward)
    if parents[k] != 20:
      assert j[k, 0] > j[parents[k], 0]
  # every joint inside the body's bounding region of its part
  for k in range(55):
    near = np.linalg.norm(v - j[k], axis=1).min()
    assert near < 0.12, k
  # eyes inside the head, close to the face surface
  assert (np.linalg.norm(v[[9448, 9929]] - j[[23, 24]], axis=1) < 0.015).all()
  j14 = _pkl(clean / 'smplx' / 'SMPLX_to_J14.pkl')
  assert isinstance(j14, np.ndarray) and j14.shape == (14, 10475)
  lsp = _check_regressor(j14, lo=4) @ v
  assert lsp[13, 1] > 0.7 and lsp[12, 1] > 0.45  # head top, neck
  assert lsp[0, 0] < 0 and lsp[5, 0] > 0  # right ankle at -x, left ankle at +x
  for m in models.values():
    _check_regressor(m['J_regressor'])
    _check_weights(m['weights'])


def test_special_vertices(smplx_npz, models, clean):
  v = smplx_npz['v_template']
  flame_ids = np.load(clean / 'smplx' / 'SMPL-X__FLAME_vertex_ids.npy')
  head = v[flame_ids]
  assert v[9120, 2] >= head[:, 2].max() - 1e-9  # the nose is the frontmost head vertex
  assert v[9448, 0] > 0 > v[9929, 0]
  assert v[6, 0] > 0.07 and v[616, 0] < -0.07  # ears
  for side, s in (('l', 1.0), ('r', -1.0)):
    for name in ('thumb', 'index', 'middle', 'ring', 'pinky'):
      tip = v[SMPLX_SPECIAL[side + name]]
      assert s * tip[0] > 0.5
    middle = v[SMPLX_SPECIAL[side + 'middle']]
    assert abs(middle[0]) >= np.abs(v[:, 0]).max() - 1e-9  # the middle fingertip reaches furthest
  for toe in ('LBigToe', 'LSmallToe', 'RBigToe', 'RSmallToe'):
    p = v[SMPLX_SPECIAL[toe]]
    assert p[2] > 0.12 and p[1] < -0.9
  for heel in ('LHeel', 'RHeel'):
    p = v[SMPLX_SPECIAL[heel]]
    assert p[2] < -0.06 and p[1] < -0.9
  assert v[5770, 0] < v[5780, 0] and v[8463, 0] > v[8474, 0]  # big toes are medial
  sv = models['smpl']['v_template']
  assert sv[332, 2] == sv[:, 2][np.abs(sv[:, 0]) < 0.3].max() or sv[332, 2] > 0.1
  for name, vid in SMPL_SPECIAL.items():
    if name[0] in 'lr' and name[1:] in MANO_TIPS:
      assert (1 if name[0] == 'l' else -1) * sv[vid, 0] > 0.75
  assert sv[2800, 0] > 0 > sv[6260, 0] and sv[583, 0] > 0.07 and sv[4071, 0] < -0.07
  # MANO fingertips (smplx ids and Hand4Whole's 745/317/444/445/556/673)
  mv = models['mano_r']['v_template']
  for name, ids in MANO_TIPS.items():
    pts = mv[list(ids)]
    assert np.ptp(pts, axis=0).max() < 0.006, name
  assert mv[list(MANO_TIPS['middle'])][:, 0].min() < -0.18


def test_region_ids_match_mano_and_flame(clean, smplx_npz, models):
  ids = _pkl(clean / 'smplx' / 'MANO_SMPLX_vertex_ids.pkl')
  assert set(ids) == {'left_hand', 'right_hand'}
  v = smplx_npz['v_template']
  jr = smplx_npz['J_regressor']
  for key, mano, wrist in (('left_hand', 'mano_l', 20), ('right_hand', 'mano_r', 21)):
    h = ids[key]
    assert h.dtype == np.int64 and h.shape == (778,)
    assert (np.diff(h) > 0).all()
    # MANO vertex k is SMPL-X vertex ids[k] (the same hand, translated to the wrist)
    mv = models[mano]['v_template']
    np.testing.assert_allclose(v[h] - v[h[0]], mv - mv[0], atol=1e-12)
    np.testing.assert_allclose(v[h] - jr[wrist] @ v, mv, atol=1e-3)
  assert np.intersect1d(ids['left_hand'], ids['right_hand']).size == 0
  flame_ids = np.load(clean / 'smplx' / 'SMPL-X__FLAME_vertex_ids.npy')
  assert flame_ids.dtype == np.int64 and flame_ids.shape == (5023,)
  assert len(np.unique(flame_ids)) == 5023
  fl = models['flame']
  offset = v[flame_ids] - fl['v_template']
  np.testing.assert_allclose(offset, offset[:1].repeat(5023, 0), atol=1e-9)
  assert np.linalg.norm(fl['J'][0]) < 0.01  # neck near the FLAME origin
  assert 0.2 < np.ptp(fl['v_template'][:, 1]) < 0.3
  # FLAME's faces are SMPL-X's faces inside the head region
  f = smplx_npz['f'].astype(np.int64)
  inside = np.isin(f, flame_ids).all(1)
  np.testing.assert_array_equal(flame_ids[fl['f'].astype(np.int64)], f[inside])
  assert np.intersect1d(flame_ids, np.concatenate([ids['left_hand'], ids['right_hand']])).size == 0


def test_landmarks(clean, smplx_npz, models):
  d = smplx_npz
  v, f = d['v_template'], d['f'].astype(np.int64)
  flame_ids = np.load(clean / 'smplx' / 'SMPL-X__FLAME_vertex_ids.npy')
  for idx, bary in ((d['lmk_faces_idx'], d['lmk_bary_coords']),
                    (d['dynamic_lmk_faces_idx'], d['dynamic_lmk_bary_coords'])):
    assert (bary > 0).all()
    np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-12)
    assert np.isin(f[idx], flame_ids).all()
  lmk = np.einsum('lki,lk->li', v[f[d['lmk_faces_idx']]], d['lmk_bary_coords'])
  assert (lmk[:, 2] > 0.06).all()  # on the front of the face
  assert lmk[:5, 0].max() < 0 < lmk[5:10, 0].min()  # iBUG order: right brow, then left brow
  dyn = np.einsum('bli,bl->bi', v[f[d['dynamic_lmk_faces_idx'][0]]],
                  d['dynamic_lmk_bary_coords'][0])
  assert dyn[0, 0] < 0 < dyn[16, 0] and dyn[8, 1] < dyn[0, 1]  # contour: right -> chin -> left
  st = _pkl(clean / 'flame' / 'flame_static_embedding.pkl')
  assert st['lmk_face_idx'].dtype == np.uint32 and st['lmk_face_idx'].shape == (51,)
  assert st['lmk_b_coords'].shape == (51, 3)
  dy = np.load(clean / 'flame' / 'flame_dynamic_embedding.npy', allow_pickle=True,
               encoding='latin1')[()]
  assert dy['lmk_face_idx'].dtype == np.int64 and dy['lmk_face_idx'].shape == (79, 17)
  assert dy['lmk_b_coords'].shape == (79, 17, 3)
  fv, ff = models['flame']['v_template'], models['flame']['f'].astype(np.int64)
  flmk = np.einsum('lki,lk->li', fv[ff[st['lmk_face_idx'].astype(np.int64)]], st['lmk_b_coords'])
  np.testing.assert_allclose(flmk - lmk, (flmk - lmk)[:1].repeat(51, 0), atol=1e-9)


def test_genders_differ(clean):
  heights = {}
  for g in ('NEUTRAL', 'MALE', 'FEMALE'):
    with np.load(clean / 'smplx' / f'SMPLX_{g}.npz') as z:
      heights[g] = np.ptp(z['v_template'][:, 1])
    heights['smpl_' + g] = np.ptp(_pkl(clean / 'smpl' / f'SMPL_{g}.pkl')['v_template'][:, 1])
  assert heights['MALE'] > heights['NEUTRAL'] > heights['FEMALE']
  assert 1.6 < heights['NEUTRAL'] < 1.8
  assert abs(heights['smpl_NEUTRAL'] - heights['NEUTRAL']) < 0.02


def test_cli_and_determinism(official, clean, cli_run):
  cli_tree, printed = cli_run
  for rel in ALL_FILES:  # the command line lists what it wrote; same seed, same bytes
    assert str(cli_tree / rel) in printed
    assert filecmp.cmp(clean / rel, cli_tree / rel, shallow=False), rel
  # SMPL-X files and the extras do not depend on `chumpy`
  for rel in ('smplx/SMPLX_NEUTRAL.npz', 'smplx/SMPLX_FEMALE.pkl', 'smplx/SMPLX_to_J14.pkl',
              'smplx/MANO_SMPLX_vertex_ids.pkl', 'smplx/SMPL-X__FLAME_vertex_ids.npy',
              'flame/flame_static_embedding.pkl', 'flame/flame_dynamic_embedding.npy'):
    assert filecmp.cmp(official / rel, clean / rel, shallow=False), rel


def test_seed_changes_blend_shapes_not_geometry(models):
  # in memory: a third 1.6 GB tree would only slow the suite down
  other = syn._make_smpl(1)['neutral']
  ref = models['smpl']
  for key in ('v_template', 'f', 'weights', 'J'):
    np.testing.assert_array_equal(other[key], ref[key])
  assert not np.array_equal(other['shapedirs'], ref['shapedirs'])
  assert not np.array_equal(other['posedirs'], ref['posedirs'])


def test_official_pickles_reference_chumpy(official, clean):
  class Ch:
    def __setstate__(self, state):
      self.state = state

  class OldCsc:
    def __setstate__(self, state):
      self.state = state

  class StandIns(pickle.Unpickler):
    def find_class(self, module, name):
      if (module, name) == ('chumpy.ch', 'Ch'):
        return Ch
      if (module, name) == ('scipy.sparse.csc', 'csc_matrix'):
        return OldCsc
      if module == '__builtin__':
        module = 'builtins'
      return super().find_class(module, name)

  for rel in ('smpl/SMPL_NEUTRAL.pkl', 'mano/MANO_LEFT.pkl', 'flame/FLAME_NEUTRAL.pkl'):
    raw = (official / rel).read_bytes()
    globals_ = {arg for op, arg, _ in pickletools.genops(raw) if op.name == 'GLOBAL'}
    assert 'chumpy.ch Ch' in globals_ and 'scipy.sparse.csc csc_matrix' in globals_
    assert 'numpy.core.multiarray _reconstruct' in globals_
    assert raw[:2] == b'\x80\x02'  # protocol 2
    with pytest.raises(ModuleNotFoundError, match='chumpy'):
      pickle.loads(raw, encoding='latin1')
    with pytest.raises(ModuleNotFoundError, match='chumpy'):
      pickle.loads(raw)
    data = StandIns(io.BytesIO(raw), encoding='latin1').load()
    ref = _pkl(clean / rel)
    assert set(data) == set(ref)
    for key in ('v_template', 'shapedirs', 'weights', 'J'):
      assert isinstance(data[key], Ch) and 'x' in data[key].state and len(data[key].state) > 1
      np.testing.assert_array_equal(data[key].state['x'], ref[key])
    st = data['J_regressor'].state
    assert set(st) == {'_shape', 'indices', 'indptr', 'data', 'maxprint'}
    dense = sparse.csc_matrix((st['data'], st['indices'], st['indptr']), shape=st['_shape'])
    np.testing.assert_array_equal(dense.toarray(), ref['J_regressor'].toarray())
    np.testing.assert_array_equal(data['posedirs'], ref['posedirs'])
  # cleaned pickles reference neither chumpy nor the old scipy module path
  raw = (clean / 'smpl' / 'SMPL_NEUTRAL.pkl').read_bytes()
  globals_ = {arg for op, arg, _ in pickletools.genops(raw) if op.name == 'GLOBAL'}
  assert not any('chumpy' in g or g.startswith('scipy.sparse.csc ') for g in globals_)


def test_smplx_package_loads_clean_files(clean):
  smplx = pytest.importorskip('smplx')
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  root = str(clean)
  with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter('ignore')
    m = smplx.create(root, 'smplx', gender='neutral', use_pca=False, use_face_contour=True)
    out = m(body_pose=0.5 * torch.randn(1, 63), left_hand_pose=0.5 * torch.randn(1, 45),
            right_hand_pose=0.5 * torch.randn(1, 45), jaw_pose=0.3 * torch.randn(1, 3),
            expression=torch.randn(1, 10), betas=torch.randn(1, 10))
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.joints).all()
    assert out.joints.shape == (1, 144, 3)
    assert 1.6 < float(np.ptp(m().vertices[0, :, 1].detach().numpy())) < 1.8
    # posing works: bend the left elbow by 90 degrees, the forearm moves, the upper arm stays
    body_pose = torch.zeros(1, 63)
    body_pose[0, 3 * (18 - 1) + 1] = -np.pi / 2
    rest, bent = m(), m(body_pose=body_pose)
    v0 = rest.vertices[0].detach().numpy()
    moved = np.linalg.norm(bent.vertices[0].detach().numpy() - v0, axis=1)
    fore = (v0[:, 0] > 0.5) & (v0[:, 0] < 0.65)
    upper = (v0[:, 0] > 0.25) & (v0[:, 0] < 0.38)
    assert moved[fore].mean() > 0.08 and moved[upper].max() < 0.01
    mp = smplx.create(root, 'smplx', gender='female', ext='pkl', use_pca=False)
    assert torch.isfinite(mp(body_pose=0.5 * torch.randn(1, 63)).vertices).all()
    assert 1.55 < float(np.ptp(mp().vertices[0, :, 1].detach().numpy())) < 1.7
    s = smplx.create(root, 'smpl', gender='neutral')
    out = s(body_pose=0.5 * torch.randn(1, 69), betas=torch.randn(1, 10))
    assert torch.isfinite(out.vertices).all() and out.vertices.shape == (1, 6890, 3)
    for is_rhand in (True, False):
      h = smplx.create(root, 'mano', is_rhand=is_rhand, use_pca=False)
      out = h(hand_pose=0.5 * torch.randn(1, 45), betas=torch.randn(1, 10))
      assert torch.isfinite(out.vertices).all() and out.vertices.shape == (1, 778, 3)
    fl = smplx.create(root, 'flame', use_face_contour=True)
    out = fl(expression=torch.randn(1, 10), jaw_pose=0.2 * torch.randn(1, 3),
             neck_pose=0.3 * torch.randn(1, 3))
    assert torch.isfinite(out.vertices).all() and out.vertices.shape == (1, 5023, 3)
    assert out.joints.shape[1] == 5 + 68


def test_geometry_does_not_depend_on_the_last_bit_of_libm(monkeypatch):
  """Different CPUs' exp/sin/cos/sqrt differ in the last bit; the files must not.

  Every float64 result of those functions is nudged up by one ulp at random
  (half of the values); the SMPL-X topology must be identical and the arrays
  equal to ~1e-12 (a tie broken differently once flipped 196 faces).
  """
  reference = syn._make_smplx(0)
  rng = np.random.default_rng(1)

  def nudged(fn):
    def call(*args, **kwargs):
      out = fn(*args, **kwargs)
      if isinstance(out, np.ndarray) and out.dtype == np.float64:
        out = np.where(rng.random(out.shape) < 0.5, np.nextafter(out, np.inf), out)
      return out
    return call

  proxy = type('NumpyProxy', (), {})()
  for name in dir(np):
    if not name.startswith('__'):
      setattr(proxy, name, getattr(np, name))
  for name in ('exp', 'sin', 'cos', 'sqrt', 'arctan2'):
    setattr(proxy, name, nudged(getattr(np, name)))
  monkeypatch.setattr(syn, 'np', proxy)
  perturbed = syn._make_smplx(0)
  np.testing.assert_array_equal(perturbed.F, reference.F)
  for key in ('P', 'W', 'posedirs', 'shapedirs', 'Jreg'):
    np.testing.assert_allclose(getattr(perturbed, key), getattr(reference, key), atol=1e-12,
                               err_msg=key)
