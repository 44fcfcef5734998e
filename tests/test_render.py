"""Pixel-level tests of the pure-numpy renderer in smplx_jax/render.py."""

import numpy as np
import pytest

from smplx_jax import render as R


# ----------------------------------------------------------------- helpers --

def uv_sphere(n_lat, n_lon, radius=1.0):
  """Closed UV sphere, outward normals with the cross(v1-v0, v2-v0) rule in
  a right-handed frame. Returns ((V, 3) vertices, (F, 3) faces)."""
  th = np.linspace(0.0, np.pi, n_lat + 1)[1:-1]
  ph = np.linspace(0.0, 2.0 * np.pi, n_lon, endpoint=False)
  t, p = np.meshgrid(th, ph, indexing="ij")
  ring = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1)
  v = np.vstack([[0.0, 1.0, 0.0], ring.reshape(-1, 3), [0.0, -1.0, 0.0]]) * radius
  n_rings = n_lat - 1
  south = len(v) - 1

  def idx(i, j):
    return 1 + i * n_lon + (j % n_lon)

  faces = []
  for j in range(n_lon):
    faces.append([0, idx(0, j), idx(0, j + 1)])
    faces.append([south, idx(n_rings - 1, j + 1), idx(n_rings - 1, j)])
  for i in range(n_rings - 1):
    for j in range(n_lon):
      a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j), idx(i + 1, j + 1)
      faces += [[a, c, d], [a, d, b]]
  return v, np.asarray(faces, dtype=np.int64)


def toy_body():
  """A few ellipsoids shaped like a standing person (metres, +Y up, +Z front),
  with a 'nose' on the front of the head. Returns (vertices, faces, nose_ids)."""
  parts = [((0.0, 0.65, 0.0), (0.10, 0.12, 0.11)), ((0.0, 0.20, 0.0), (0.18, 0.32, 0.11)),
       ((-0.35, 0.38, 0.0), (0.20, 0.05, 0.05)), ((0.35, 0.38, 0.0), (0.20, 0.05, 0.05)),
       ((-0.10, -0.45, 0.0), (0.07, 0.38, 0.07)), ((0.10, -0.45, 0.0), (0.07, 0.38, 0.07)),
       ((0.0, 0.62, 0.12), (0.02, 0.03, 0.03))]
  sv, sf = uv_sphere(12, 20)
  vs, fs = [], []
  for k, (centre, scale) in enumerate(parts):
    vs.append(sv * scale + centre)
    fs.append(sf + k * len(sv))
  nose_ids = np.arange(len(sv)) + (len(parts) - 1) * len(sv)  # the last part
  return np.vstack(vs), np.vstack(fs), nose_ids


def square_mesh(z=2.0):
  """Unit square (side 1 m) centred on the optical axis at depth z, two
  triangles sharing the diagonal (-0.5,-0.5) -> (0.5,0.5)."""
  v = np.array([[-0.5, -0.5, z], [0.5, -0.5, z], [0.5, 0.5, z], [-0.5, 0.5, z]])
  f = np.array([[0, 1, 2], [0, 2, 3]])
  return v, f


def coverage_counts(vertices_px, faces, height, width):
  """How many fragments (before the z-test) land on each pixel."""
  cnt = np.zeros(height * width, dtype=np.int64)
  for pix, _, _ in R.iter_fragments(vertices_px, faces, height, width):
    cnt += np.bincount(pix, minlength=height * width)
  return cnt.reshape(height, width)


# ------------------------------------------------------------ projection --

def test_project_formula():
  v = np.array([[0.2, -0.1, 2.0], [0.0, 0.0, 1.0]])
  out = R.project(v, (1000.0, 900.0), (320.0, 240.0))
  np.testing.assert_allclose(out[0], [1000 * 0.1 + 320, 900 * -0.05 + 240, 2.0])
  np.testing.assert_allclose(out[1], [320.0, 240.0, 1.0])
  assert out.shape == (2, 3)


# ---------------------------------------------------------- rasterization --

@pytest.mark.parametrize("focal,princpt", [
  (100.0, (32.0, 32.0)),      # edges and diagonal exactly on pixel centres
  (101.3, (31.7, 32.2)),      # edges between pixel centres
  (300.0, (99.0, 100.0)),     # large: boxes split into several row bands
])
@pytest.mark.parametrize("flip_winding", [False, True])
def test_unit_square_exact_coverage(focal, princpt, flip_winding):
  h = w = 200
  v, f = square_mesh(z=2.0)
  if flip_winding:
    f = f[:, ::-1].copy()
  vpx = R.project(v, focal, princpt)
  xmin, xmax = vpx[:, 0].min(), vpx[:, 0].max()
  ymin, ymax = vpx[:, 1].min(), vpx[:, 1].max()
  yy, xx = np.mgrid[0:h, 0:w]
  # Top-left rule: a centre on the left/top edge is in, on the right/bottom edge out.
  expected = (xx >= xmin) & (xx < xmax) & (yy >= ymin) & (yy < ymax)
  assert expected.sum() > 2000

  depth, face_index = R.rasterize(vpx, f, h, w)
  covered = face_index >= 0
  np.testing.assert_array_equal(covered, expected)
  assert set(np.unique(face_index[covered])) == {0, 1}
  np.testing.assert_allclose(depth[covered], 2.0, rtol=1e-6)
  assert np.all(np.isinf(depth[~covered]))

  # Each triangle alone: disjoint, and together exactly the square (no gap
  # and no double cover along the shared diagonal).
  m0 = R.rasterize(vpx, f[:1], h, w)[1] >= 0
  m1 = R.rasterize(vpx, f[1:], h, w)[1] >= 0
  assert not np.any(m0 & m1)
  np.testing.assert_array_equal(m0 | m1, expected)
  np.testing.assert_array_equal(face_index == 0, m0)
  np.testing.assert_array_equal(coverage_counts(vpx, f, h, w), expected.astype(int))
  if focal == 100.0:
    # The diagonal x == y passes through 50 pixel centres; each is owned once.
    diag = np.arange(7, 57)
    assert np.all(covered[diag, diag])


def test_closed_sphere_is_watertight():
  # A closed convex mesh: every covered pixel is hit exactly twice (once by
  # the front surface, once by the back), never once (crack) or 3+ times.
  v, f = uv_sphere(40, 64)
  h, w = 160, 200
  vcam = v * 0.9 + [0.05, -0.03, 3.0]
  vpx = R.project(vcam, 150.0, (99.3, 80.6))
  counts = coverage_counts(vpx, f, h, w)
  assert set(np.unique(counts)) == {0, 2}
  _, face_index = R.rasterize(vpx, f, h, w)
  np.testing.assert_array_equal(face_index >= 0, counts == 2)
  # Silhouette of a convex polyhedron: every row and column run is contiguous.
  covered = face_index >= 0
  for line in list(covered) + list(covered.T):
    idx = np.nonzero(line)[0]
    if idx.size:
      assert idx[-1] - idx[0] + 1 == idx.size
  # The visible surface is the front half (nearer than the centre).
  depth, _ = R.rasterize(vpx, f, h, w)
  assert np.all(depth[covered] < 3.0)


def test_shared_edge_through_pixel_centre_owned_exactly_once():
  # Random edges a-b that pass (up to rounding) through a pixel centre p,
  # with one triangle on each side: p must be covered exactly once. Rounding
  # of the edge function differs with the edge direction unless it is
  # evaluated direction-independently, which would give 0 or 2 here.
  rng = np.random.default_rng(7)
  h = w = 24
  p = np.array([11.0, 12.0])
  bad = 0
  for _ in range(300):
    d = rng.normal(size=2) * rng.uniform(2.0, 9.0)
    a, b = p + rng.uniform(0.1, 1.0) * d, p - rng.uniform(0.1, 1.0) * d
    n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * rng.uniform(1.0, 8.0)
    c1, c2 = p + n + rng.normal(size=2) * 0.3, p - n + rng.normal(size=2) * 0.3
    vpx = np.column_stack([np.array([a, b, c1, c2]), np.ones(4)])
    faces = np.array([[0, 1, 2], [1, 0, 3]])
    if rng.random() < 0.5:
      faces = faces[:, ::-1].copy()
    bad += coverage_counts(vpx, faces, h, w)[12, 11] != 1
  assert bad == 0


@pytest.mark.parametrize("near_first", [True, False])
def test_depth_ordering_independent_of_face_order(near_first):
  h, w = 40, 50
  # Pixel-space triangles: a far big one (Z=3) and a near one (Z=1) inside it.
  vpx = np.array([[2.0, 2.0, 3.0], [45.0, 3.0, 3.0], [20.0, 38.0, 3.0],
          [10.0, 8.0, 1.0], [30.0, 9.0, 1.0], [18.0, 25.0, 1.0]])
  near, far = [3, 4, 5], [0, 1, 2]
  faces = np.array([near, far] if near_first else [far, near])
  near_id = 0 if near_first else 1
  depth, face_index = R.rasterize(vpx, faces, h, w)
  alone_near = R.rasterize(vpx, [near], h, w)[1] >= 0
  alone_far = R.rasterize(vpx, [far], h, w)[1] >= 0
  overlap = alone_near & alone_far
  assert overlap.sum() > 50
  assert np.all(face_index[overlap] == near_id)
  np.testing.assert_allclose(depth[overlap], 1.0)
  only_far = alone_far & ~alone_near
  assert np.all(face_index[only_far] == 1 - near_id)
  np.testing.assert_allclose(depth[only_far], 3.0)


def test_depth_interpolated_linearly():
  # Z varies linearly with x in screen space: z = 1 + x / 10.
  vpx = np.array([[0.0, 0.0, 1.0], [20.0, 0.0, 3.0], [0.0, 20.0, 1.0]])
  depth, face_index = R.rasterize(vpx, [[0, 1, 2]], 21, 21)
  ys, xs = np.nonzero(face_index >= 0)
  np.testing.assert_allclose(depth[ys, xs], 1.0 + xs / 10.0, rtol=1e-6)


def test_behind_camera_and_empty():
  h = w = 32
  behind = np.array([[-0.5, -0.5, -2.0], [0.5, -0.5, -2.0], [0.0, 0.5, -2.0]])
  straddle = np.array([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 0.0]])
  for v in (behind, straddle):
    vpx = R.project(v, 30.0, (16.0, 16.0))
    depth, face_index = R.rasterize(vpx, [[0, 1, 2]], h, w)
    assert np.all(face_index == -1) and np.all(np.isinf(depth))
  # A visible triangle next to a behind-camera one: only the visible one is drawn.
  v = np.vstack([behind, behind * [1, 1, -1]])
  _, face_index = R.rasterize(R.project(v, 30.0, (16.0, 16.0)), [[0, 1, 2], [3, 4, 5]], h, w)
  assert set(np.unique(face_index)) == {-1, 1}

  v, _ = square_mesh()
  empty = np.zeros((0, 3), dtype=np.int64)
  depth, face_index = R.rasterize(R.project(v, 30.0, (16.0, 16.0)), empty, h, w)
  assert depth.shape == (h, w) and face_index.shape == (h, w)
  assert depth.dtype == np.float32 and face_index.dtype == np.int32
  assert np.all(face_index == -1)
  bg = np.full((h, w, 3), 7, np.uint8)
  rgb, mask = R.render_mesh(v, empty, 30.0, (16.0, 16.0), bg)
  assert not mask.any()
  np.testing.assert_array_equal(rgb, bg)


# ---------------------------------------------------------------- shading --

def test_render_mesh_mask_background_and_alpha():
  h, w = 60, 80
  rng = np.random.default_rng(0)
  bg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  bg[..., 1] = 0  # the default colour always has green > 0 after shading
  bg_copy = bg.copy()
  v, f = uv_sphere(16, 24)
  v = v * 0.5 + [0.1, 0.0, 2.5]
  focal, princpt = (90.0, 95.0), (39.5, 29.5)

  rgb, mask = R.render_mesh(v, f, focal, princpt, bg)
  np.testing.assert_array_equal(bg, bg_copy)  # input untouched
  assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
  _, face_index = R.rasterize(R.project(v, focal, princpt), f, h, w)
  np.testing.assert_array_equal(mask, face_index >= 0)
  assert 200 < mask.sum() < h * w
  np.testing.assert_array_equal(rgb[~mask], bg[~mask])
  assert np.all(np.any(rgb[mask] != bg[mask], axis=1))

  # Half transparent: halfway between the opaque render and the background.
  rgb_half, mask_half = R.render_mesh(v, f, focal, princpt, bg, alpha=0.5)
  np.testing.assert_array_equal(mask_half, mask)
  np.testing.assert_array_equal(rgb_half[~mask], bg[~mask])
  mid = (rgb[mask].astype(float) + bg[mask]) / 2.0
  assert np.abs(rgb_half[mask] - mid).max() <= 1.0

  # No image: white background of the requested size.
  rgb_w, mask_w = R.render_mesh(v, f, focal, princpt, height=h, width=w)
  np.testing.assert_array_equal(mask_w, mask)
  assert np.all(rgb_w[~mask_w] == 255)
  np.testing.assert_array_equal(rgb_w[mask_w], rgb[mask])


def test_shading_facing_brighter_than_tilted():
  # Two separate triangles at the same depth: one facing the camera, one
  # rotated 60 degrees about the vertical axis.
  c, s = np.cos(np.radians(60)), np.sin(np.radians(60))
  tri = np.array([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0]])
  facing = tri + [-0.5, 0.0, 3.0]
  tilted = tri @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T + [0.5, 0.0, 3.0]
  v = np.vstack([facing, tilted])
  f = np.array([[0, 1, 2], [3, 4, 5]])
  color = (0.6, 0.7, 0.8)
  h, w = 100, 160
  rgb, mask = R.render_mesh(v, f, 200.0, (79.5, 49.5), height=h, width=w, color=color)
  _, face_index = R.rasterize(R.project(v, 200.0, (79.5, 49.5)), f, h, w)
  lum = rgb.astype(float).sum(axis=2)
  lit, side = lum[face_index == 0], lum[face_index == 1]
  assert lit.size > 100 and side.size > 50
  assert lit.min() > side.max() + 50
  # Facing the default light (from the camera): full intensity = the colour.
  np.testing.assert_array_equal(rgb[face_index == 0][0], np.rint(np.array(color) * 255))
  # Ambient keeps even a face lit edge-on from being black.
  rgb2, _ = R.render_mesh(v, f, 200.0, (79.5, 49.5), height=h, width=w, light_dir=(1, 0, 0))
  assert rgb2[face_index == 0].min() > 0.2 * 255 * 0.6


# ----------------------------------------------------------------- camera --

def test_look_at_camera_frames_the_body():
  v, f, nose = toy_body()
  h, w = 512, 384
  for yaw, pitch in [(0.0, 0.0), (35.0, 10.0), (180.0, -20.0)]:
    vcam, focal, princpt = R.look_at_camera(v, image_size=(h, w), yaw_deg=yaw,
                        pitch_deg=pitch)
    assert vcam.shape == v.shape and focal.shape == (2,) and princpt.shape == (2,)
    assert np.all(vcam[:, 2] > 0)
    vpx = R.project(vcam, focal, princpt)
    assert np.all((vpx[:, 0] >= 0) & (vpx[:, 0] <= w - 1))
    assert np.all((vpx[:, 1] >= 0) & (vpx[:, 1] <= h - 1))
    rgb, mask = R.render_mesh(vcam, f, focal, princpt, height=h, width=w)
    ys, xs = np.nonzero(mask)
    span = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert span > 0.6 * max(h, w)
    assert ys.min() > 0 and xs.min() > 0 and ys.max() < h - 1 and xs.max() < w - 1

  # Orientation at yaw 0: head at the top, the front (nose) nearest the camera.
  vcam, focal, princpt = R.look_at_camera(v, image_size=(h, w))
  vpx = R.project(vcam, focal, princpt)
  assert vpx[np.argmax(v[:, 1]), 1] < vpx[np.argmin(v[:, 1]), 1]
  assert vcam[nose, 2].min() == pytest.approx(vcam[:, 2].min())
  # The nose is visible from the front and hidden from behind.
  _, fi_front = R.rasterize(vpx, f, h, w)
  nose_faces = np.nonzero(np.isin(f, nose).all(axis=1))[0]
  assert np.isin(fi_front, nose_faces).sum() > 20
  vcam_b, focal_b, princpt_b = R.look_at_camera(v, image_size=(h, w), yaw_deg=180.0)
  _, fi_back = R.rasterize(R.project(vcam_b, focal_b, princpt_b), f, h, w)
  assert np.isin(fi_back, nose_faces).sum() == 0


# -------------------------------------------------------------------- io --

def test_save_png_round_trip(tmp_path):
  from PIL import Image

  rng = np.random.default_rng(1)
  img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
  path = tmp_path / "out.png"
  R.save_png(path, img)
  back = np.asarray(Image.open(path).convert("RGB"))
  np.testing.assert_array_equal(back, img)

  v, f = uv_sphere(10, 16)
  rgb, _ = R.render_mesh(v + [0, 0, 3.0], f, 40.0, (20.0, 15.0), height=30, width=40)
  R.save_png(str(tmp_path / "render.png"), rgb)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "render.png")), rgb)
