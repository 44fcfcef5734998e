"""Pure-numpy CPU mesh renderer: projection, z-buffer rasterizer, Lambert shading.

Why no OpenGL: the PyTorch Hand4Whole demo renders with pyrender/OpenGL, which
needs a display, EGL or OSMesa and fails in many headless setups (servers,
containers, CI). This module needs only numpy (and Pillow to write PNG files),
so it works anywhere, with the same results on every machine.

Conventions
-----------
* Camera frame (OpenCV, as in Hand4Whole): metres, +X right, +Y down, +Z
  forward (into the image). A point is in front of the camera when Z > 0.
* Pixel coordinates: x to the right, y down; pixel (i, j) (row i, column j)
  is the point x = j, y = i, i.e. pixel centres lie at integer coordinates.
* A pixel is covered by a triangle when its centre is strictly inside, or lies
  exactly on an edge that the triangle "owns" under a top-left fill rule. The
  edge functions are evaluated so that the two triangles sharing an edge get
  exactly opposite values, so a closed mesh has no cracks and no pixel is
  drawn twice by the same surface layer.
* Depth is the camera-frame Z, interpolated linearly in screen space.

Main functions: :func:`project`, :func:`rasterize`, :func:`render_mesh`,
:func:`look_at_camera`, :func:`save_png`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
  "NEAR",
  "project",
  "iter_fragments",
  "rasterize",
  "vertex_normals",
  "render_mesh",
  "look_at_camera",
  "save_png",
]

#: Triangles with any vertex at camera depth Z <= NEAR are not drawn.
NEAR = 1e-6

# Bounding-box side lengths (pixels) used to bucket triangles: a triangle whose
# box is w x h pixels is evaluated on a grid of the next sizes up in this list.
_SIZE_CLASSES = np.array(
  [1, 2, 3, 4]
  + [int(p * k) for p in (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
     for k in (1.25, 1.5, 1.75, 2.0)],
  dtype=np.int64,
)
# Bounding boxes taller than this are processed as several horizontal bands.
_BAND_ROWS = 64
# Maximum number of grid samples (triangles x box pixels) evaluated at once.
_CHUNK_SAMPLES = 1 << 19
# Face-buffer value for "no face yet" while merging (becomes -1 at the end).
_NO_FACE = np.iinfo(np.int64).max
# Maximum number of pending fragments before they are merged into the z-buffer.
_FLUSH_FRAGMENTS = 1 << 21


def project(vertices_cam, focal, princpt):
  """Perspective projection of camera-frame points to pixel coordinates.

  Args:
    vertices_cam: (V, 3) points in metres in the camera frame
      (+X right, +Y down, +Z forward).
    focal: scalar or (2,) focal lengths (fx, fy) in pixels.
    princpt: (2,) principal point (cx, cy) in pixels.

  Returns:
    (V, 3) float64 array: x_px = fx * X / Z + cx, y_px = fy * Y / Z + cy,
    and the third column is the depth Z (metres), unchanged. Points with
    Z <= 0 give meaningless (possibly inf/nan) pixel coordinates;
    :func:`rasterize` skips triangles that touch them.
  """
  v = np.asarray(vertices_cam, dtype=np.float64).reshape(-1, 3)
  f = np.broadcast_to(np.asarray(focal, dtype=np.float64), (2,))
  c = np.broadcast_to(np.asarray(princpt, dtype=np.float64), (2,))
  z = v[:, 2]
  out = np.empty_like(v)
  with np.errstate(divide="ignore", invalid="ignore"):
    out[:, 0] = f[0] * v[:, 0] / z + c[0]
    out[:, 1] = f[1] * v[:, 1] / z + c[1]
  out[:, 2] = z
  return out


def _canonical_edges(pa, pb):
  """Edge a->b of many triangles, stored in a direction-independent form.

  Args:
    pa, pb: (N, 2) edge endpoints (pixels).

  Returns:
    ox, oy, dx, dy, sign: (N,) arrays. (ox, oy) is the lexicographically
    smaller endpoint and (dx, dy) the vector to the other one; the edge
    function of the directed edge a->b at pixel p is
    sign * (dx * (p_y - oy) - dy * (p_x - ox)).
    Because both triangles sharing an edge compute the very same floating
    point expression and only the (exact) sign differs, their results are
    exact negatives of each other: this is what makes the mesh watertight.
  """
  swap = (pa[:, 0] > pb[:, 0]) | ((pa[:, 0] == pb[:, 0]) & (pa[:, 1] > pb[:, 1]))
  o = np.where(swap[:, None], pb, pa)
  q = np.where(swap[:, None], pa, pb)
  d = q - o
  sign = np.where(swap, -1.0, 1.0)
  return o[:, 0], o[:, 1], d[:, 0], d[:, 1], sign


def iter_fragments(vertices_px, faces, height, width):
  """Yield every (pixel, face) coverage of a triangle mesh, without z-test.

  This is the vectorized core of :func:`rasterize`. Triangles are bucketed by
  the size of their pixel bounding box; for each bucket, edge functions of
  many triangles are evaluated at once over their (padded) boxes.

  Args:
    vertices_px: (V, 3) pixel x, pixel y, depth Z (output of :func:`project`).
    faces: (F, 3) integer vertex indices.
    height, width: image size in pixels.

  Yields:
    (pix, z, face) tuples of 1-D arrays of equal length: flat pixel index
    (row * width + col, int64), interpolated depth (float64, metres) and
    face index (int64). Triangles with a vertex at Z <= NEAR, with a
    non-finite coordinate, or with zero screen area are skipped; both
    windings are drawn.
  """
  height, width = int(height), int(width)
  vp = np.asarray(vertices_px, dtype=np.float64).reshape(-1, 3)
  faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
  if faces.shape[0] == 0 or height <= 0 or width <= 0:
    return
  tri = vp[faces]  # (F, 3, 3)
  ok = np.all(np.isfinite(tri), axis=(1, 2)) & np.all(tri[:, :, 2] > NEAR, axis=1)

  # Pixel-centre bounding boxes, clipped to the image.
  with np.errstate(invalid="ignore"):
    lo = np.ceil(tri[:, :, :2].min(axis=1))
    hi = np.floor(tri[:, :, :2].max(axis=1))
  lo = np.maximum(np.where(ok[:, None], lo, 0.0), 0.0)
  hi = np.minimum(np.where(ok[:, None], hi, -1.0), [width - 1.0, height - 1.0])
  ok &= np.all(hi >= lo, axis=1)
  face_ids = np.nonzero(ok)[0]
  if face_ids.size == 0:
    return
  tri = tri[face_ids]
  x0 = lo[face_ids, 0].astype(np.int64)
  y0 = lo[face_ids, 1].astype(np.int64)
  x1 = hi[face_ids, 0].astype(np.int64)
  y1 = hi[face_ids, 1].astype(np.int64)

  # Edges e0 = v1->v2, e1 = v2->v0, e2 = v0->v1 (edge k is opposite vertex k).
  p = tri[:, :, :2]
  edges = [_canonical_edges(p[:, (k + 1) % 3], p[:, (k + 2) % 3]) for k in range(3)]
  # Orientation: twice the signed area, from edge e2 evaluated at vertex 2.
  ox, oy, dx, dy, sg = edges[2]
  area2 = sg * (dx * (p[:, 2, 1] - oy) - dy * (p[:, 2, 0] - ox))
  orient = np.sign(area2)
  keep = orient != 0
  if not np.all(keep):
    face_ids, tri, x0, y0, x1, y1, orient = (
      a[keep] for a in (face_ids, tri, x0, y0, x1, y1, orient))
    edges = [tuple(a[keep] for a in e) for e in edges]
    if face_ids.size == 0:
      return
  # Directed edge functions, oriented so that the inside is positive, and the
  # top-left ownership of each edge (for pixel centres exactly on the edge).
  sgn, owns = [], []
  for ox, oy, dx, dy, sg in edges:
    s = sg * orient
    ddx, ddy = s * dx, s * dy
    sgn.append(s)
    owns.append((ddy < 0) | ((ddy == 0) & (ddx > 0)))
  z = tri[:, :, 2]

  # Split boxes taller than _BAND_ROWS into horizontal bands, so that one
  # unit of work is at most _BAND_ROWS x width samples (bounded memory even
  # for a triangle covering a huge image).
  n_bands = (y1 - y0) // _BAND_ROWS + 1
  bt = np.repeat(np.arange(face_ids.size), n_bands)  # band -> triangle
  first_band = np.repeat(np.cumsum(n_bands) - n_bands, n_bands)
  by0 = y0[bt] + (np.arange(bt.size) - first_band) * _BAND_ROWS
  by1 = np.minimum(by0 + _BAND_ROWS - 1, y1[bt])
  bx0, bx1 = x0[bt], x1[bt]

  # Bucket the bands by padded bounding-box size.
  classes = np.append(_SIZE_CLASSES, max(height, width))  # for huge images
  ncls = classes.size
  cw = np.searchsorted(classes, bx1 - bx0 + 1)
  ch = np.searchsorted(classes, by1 - by0 + 1)
  key = cw * ncls + ch
  order = np.argsort(key, kind="stable")
  key_sorted = key[order]
  starts = np.r_[0, np.nonzero(np.diff(key_sorted))[0] + 1, key_sorted.size]
  for b in range(starts.size - 1):
    members = order[starts[b]:starts[b + 1]]
    gw = int(classes[key_sorted[starts[b]] // ncls])
    gh = int(classes[key_sorted[starts[b]] % ncls])
    per_chunk = max(1, _CHUNK_SAMPLES // (gw * gh))
    for c0 in range(0, members.size, per_chunk):
      bands = members[c0:c0 + per_chunk]
      t = bt[bands]
      # Pixel-centre coordinates of each band's grid; padding cells
      # beyond the box become NaN so every test on them is False.
      px = (bx0[bands, None] + np.arange(gw)).astype(np.float64)
      py = (by0[bands, None] + np.arange(gh)).astype(np.float64)
      px[px > bx1[bands, None]] = np.nan
      py[py > by1[bands, None]] = np.nan
      inside = None
      w = []
      for k in range(3):
        ox, oy, dx, dy, _ = edges[k]
        a = dx[t, None] * (py - oy[t, None])  # (n, gh)
        bb = dy[t, None] * (px - ox[t, None])  # (n, gw)
        e = a[:, :, None] - bb[:, None, :]
        e *= sgn[k][t, None, None]
        ins = np.where(owns[k][t, None, None], e >= 0, e > 0)
        inside = ins if inside is None else (inside & ins)
        w.append(e)
      ti, gi, gj = np.nonzero(inside)
      if ti.size == 0:
        continue
      w0, w1, w2 = (e[ti, gi, gj] for e in w)
      tt, bb_ = t[ti], bands[ti]
      den = w0 + w1 + w2
      depth = (w0 * z[tt, 0] + w1 * z[tt, 1] + w2 * z[tt, 2]) / den
      pix = (by0[bb_] + gi) * width + (bx0[bb_] + gj)
      yield pix, depth, face_ids[tt]


def _merge(depth_flat, face_flat, pix, z, face):
  """Merge fragments into a flat z-buffer in place: the nearest fragment wins,
  ties go to the smaller face index (so the result does not depend on the
  order of the faces). ``face_flat`` holds a large sentinel where empty."""
  old = depth_flat[pix]
  np.minimum.at(depth_flat, pix, z)
  new = depth_flat[pix]
  # Pixels that got nearer forget their previous face.
  face_flat[pix[new < old]] = _NO_FACE
  win = z == new
  np.minimum.at(face_flat, pix[win], face[win])


def rasterize(vertices_px, faces, height, width):
  """Z-buffer rasterization of a triangle mesh given in pixel coordinates.

  Args:
    vertices_px: (V, 3) pixel x, pixel y, depth Z in metres (the output of
      :func:`project`).
    faces: (F, 3) integer vertex indices (F may be 0).
    height, width: output size in pixels.

  Returns:
    depth: (H, W) float32 depth Z of the nearest surface, +inf where empty.
    face_index: (H, W) int32 index into ``faces`` of that surface, -1 where
      empty.

  Pixel (i, j) samples the point x = j, y = i. Coverage follows a top-left
  fill rule, so triangles sharing an edge leave no gap and do not both cover
  a pixel on it. Depth is interpolated linearly in screen space. Triangles
  with any vertex at Z <= NEAR (1e-6) are skipped; there is no back-face
  culling. Memory stays bounded: work is done in chunks.
  """
  height, width = int(height), int(width)
  depth = np.full(height * width, np.inf, dtype=np.float64)
  face_index = np.full(height * width, _NO_FACE, dtype=np.int64)
  pending, count = [], 0
  for frag in iter_fragments(vertices_px, faces, height, width):
    pending.append(frag)
    count += frag[0].size
    if count >= _FLUSH_FRAGMENTS:
      _merge(depth, face_index, *(np.concatenate(a) for a in zip(*pending)))
      pending, count = [], 0
  if pending:
    _merge(depth, face_index, *(np.concatenate(a) for a in zip(*pending)))
  face_index[face_index == _NO_FACE] = -1
  return (depth.astype(np.float32).reshape(height, width),
      face_index.astype(np.int32).reshape(height, width))


def vertex_normals(vertices, faces):
  """Area-weighted unit vertex normals.

  Args:
    vertices: (V, 3) positions (any frame, any unit).
    faces: (F, 3) integer vertex indices.

  Returns:
    (V, 3) float64 unit normals: the normalized sum of the (unnormalized,
    hence area-weighted) face normals cross(v1 - v0, v2 - v0) of the faces
    around each vertex; zero for vertices that belong to no face.
  """
  v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
  f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
  fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
  idx = f.reshape(-1)
  vn = np.stack([np.bincount(idx, weights=np.repeat(fn[:, c], 3), minlength=len(v))
           for c in range(3)], axis=1)
  norm = np.linalg.norm(vn, axis=1, keepdims=True)
  return np.divide(vn, norm, out=np.zeros_like(vn), where=norm > 0)


def render_mesh(vertices_cam, faces, focal, princpt, image=None, *, height=None,
        width=None, color=(0.65, 0.74, 0.86), alpha=1.0, light_dir=None,
        ambient=0.3):
  """Render a shaded mesh, optionally over an image.

  Shading is smooth Lambert: area-weighted vertex normals are interpolated
  (linearly in screen space) to each pixel, and
  ``intensity = ambient + (1 - ambient) * max(0, n . l)``. Lighting is
  two-sided: where the visible side of a face is its back, the normal is
  flipped toward the camera.

  Args:
    vertices_cam: (V, 3) vertices in metres, camera frame (+X right,
      +Y down, +Z forward).
    faces: (F, 3) integer vertex indices.
    focal: scalar or (2,) focal lengths (fx, fy) in pixels.
    princpt: (2,) principal point (cx, cy) in pixels.
    image: optional (H, W, 3) uint8 background; it is not modified.
    height, width: output size when ``image`` is None (then the background
      is white); if given with ``image`` they must match it.
    color: RGB in [0, 1] of the mesh material.
    alpha: opacity of the mesh in [0, 1] where it covers the image.
    light_dir: (3,) direction from the scene toward the (directional)
      light, in the camera frame. Default (0, 0, -1): light at the camera.
    ambient: ambient fraction in [0, 1], so unlit parts are not black.

  Returns:
    rgb: (H, W, 3) uint8 image; pixels outside ``mask`` equal the
      background exactly.
    mask: (H, W) bool, True where the mesh covers the pixel.
  """
  if image is not None:
    bg = np.asarray(image)
    if bg.ndim != 3 or bg.shape[2] != 3 or bg.dtype != np.uint8:
      raise ValueError(f"image must be (H, W, 3) uint8, got {bg.shape} {bg.dtype}")
    if (height is not None and height != bg.shape[0]) or (
        width is not None and width != bg.shape[1]):
      raise ValueError("height/width do not match the image size")
    height, width = bg.shape[:2]
    out = bg.copy()
  else:
    if height is None or width is None:
      raise ValueError("give either image or both height and width")
    height, width = int(height), int(width)
    out = np.full((height, width, 3), 255, dtype=np.uint8)

  v = np.asarray(vertices_cam, dtype=np.float64).reshape(-1, 3)
  f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
  vpx = project(v, focal, princpt)
  _, face_index = rasterize(vpx, f, height, width)
  mask = face_index >= 0
  if not mask.any():
    return out, mask

  ys, xs = np.nonzero(mask)
  fi = face_index[ys, xs].astype(np.int64)
  tri = f[fi]  # (K, 3)
  # Screen-space barycentric coordinates of the pixel centres.
  a, b, c = (vpx[tri[:, k], :2] for k in range(3))
  p = np.stack([xs, ys], axis=1).astype(np.float64)

  def cross2(u, w):
    return u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0]

  den = cross2(b - a, c - a)
  l1 = cross2(p - a, c - a) / den
  l2 = cross2(b - a, p - a) / den
  bary = np.clip(np.stack([1.0 - l1 - l2, l1, l2], axis=1), 0.0, 1.0)
  bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)

  vn = vertex_normals(v, f)
  n = np.einsum("kj,kjc->kc", bary, vn[tri])
  # Two-sided lighting: flip where the face's back side is the visible one.
  fn = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
  centroid = v[tri].mean(axis=1)
  back = np.einsum("kc,kc->k", fn, centroid) > 0  # normal points away from camera
  n[back] *= -1.0
  n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

  light = np.array((0.0, 0.0, -1.0) if light_dir is None else light_dir, dtype=np.float64)
  light /= max(np.linalg.norm(light), 1e-12)
  lambert = np.clip(n @ light, 0.0, 1.0)
  intensity = ambient + (1.0 - ambient) * lambert
  shaded = np.asarray(color, dtype=np.float64)[None, :] * intensity[:, None] * 255.0

  alpha = float(alpha)
  blended = alpha * shaded + (1.0 - alpha) * out[ys, xs].astype(np.float64)
  out[ys, xs] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
  return out, mask


def look_at_camera(vertices, *, image_size=(512, 512), yaw_deg=0.0, pitch_deg=0.0,
           margin=1.15):
  """Place a body-model mesh in front of a virtual camera for demo renders.

  The mesh is given in the body-model convention (+Y up, +Z toward the
  viewer, so at yaw 0 the body's front faces the camera). It is rotated about
  the centre of its bounding box, first by ``yaw_deg`` about +Y, then by
  ``pitch_deg`` about +X (right-hand rule, degrees), converted to the camera
  convention (+Y down, +Z forward: Y and Z are negated, a 180 degree rotation
  about X) and pushed along +Z so that every vertex projects inside the
  image with ``margin`` (1.15 leaves ~7.5% free on each side of the tighter
  dimension). The focal length is 2 * max(H, W) (a ~28 degree field of view).

  Args:
    vertices: (V, 3) vertices in metres, body-model convention.
    image_size: (height, width) in pixels.
    yaw_deg, pitch_deg: rotation of the mesh in degrees.
    margin: >= 1, how much free space to leave around the mesh.

  Returns:
    vertices_cam: (V, 3) float64 camera-frame vertices (all Z > 0).
    focal: (2,) (fx, fy) in pixels.
    princpt: (2,) (cx, cy) in pixels, the image centre ((W-1)/2, (H-1)/2).
  """
  v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
  height, width = int(image_size[0]), int(image_size[1])
  centre = (v.min(axis=0) + v.max(axis=0)) / 2.0 if len(v) else np.zeros(3)
  yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
  rot_y = np.array([[np.cos(yaw), 0.0, np.sin(yaw)],
            [0.0, 1.0, 0.0],
            [-np.sin(yaw), 0.0, np.cos(yaw)]])
  rot_x = np.array([[1.0, 0.0, 0.0],
            [0.0, np.cos(pitch), -np.sin(pitch)],
            [0.0, np.sin(pitch), np.cos(pitch)]])
  p = (v - centre) @ (rot_x @ rot_y).T
  p *= np.array([1.0, -1.0, -1.0])  # body (+Y up, +Z to viewer) -> camera

  fl = 2.0 * max(height, width)
  focal = np.array([fl, fl])
  princpt = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
  half_w = width / 2.0 / margin
  half_h = height / 2.0 / margin
  scale = float(np.abs(p).max()) if len(p) else 0.0
  if scale == 0.0:
    scale = 1.0
  # x_px - cx = fl * X / (d + Z) must satisfy |.| <= half_w (and same for y).
  need = np.maximum(fl * np.abs(p[:, 0]) / half_w, fl * np.abs(p[:, 1]) / half_h) - p[:, 2]
  closest = -p[:, 2].min() if len(p) else 0.0
  dist = max(float(need.max()) if len(p) else 0.0, closest + 1e-3 * scale)
  return p + np.array([0.0, 0.0, dist]), focal, princpt


def save_png(path, rgb):
  """Write an image to a PNG file.

  Args:
    path: output file path (str or os.PathLike).
    rgb: (H, W, 3) uint8 RGB image ((H, W) grayscale and (H, W, 4) RGBA
      are accepted too; a bool mask is written as 0/255).
  """
  from PIL import Image

  arr = np.asarray(rgb)
  if arr.dtype == np.bool_:
    arr = arr.astype(np.uint8) * 255
  if arr.dtype != np.uint8:
    raise ValueError(f"save_png expects uint8 (or bool), got {arr.dtype}")
  if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
    raise ValueError(f"save_png expects (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
  Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG")
