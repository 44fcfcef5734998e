"""Demo speed: pictures/s and video frames/s with 1 and 4 people, next to upstream's demo path.

    python bench/demo_speed.py [--upstream PATH/TO/Hand4Whole_RELEASE --torch-python PYTHON]
        [--human-model-path DIR] [--repeats 3]

The pictures are real: scikit-image's astronaut (512x512, one person) and the same photo tiled
2x2 (1024x1024, four people). Both sides use the ResNet-50/50/18 model with the deterministic
fake weights of tests/fake_h4w.py (the time does not depend on the values) and the same body
models (synthetic, chumpy-free, unless --human-model-path).

Ours (this interpreter, JAX on its default device, numpy detector on the CPU), per picture:
  detect   SSDLite person detector (h4w_jax.inference.ssdlite)
  crop     upstream's process_bbox + 512x384 crop, per person
  network  the jitted model + SMPL-X on all the picture's people in one call (compile time
           reported apart: paid once per batch bucket)
  draw     everyone over the picture with the CPU rasterizer
  picture  all of the above = the demo's --image path without the file writes
  video    frames/s of the demo's video path (frames of the picture; batches of 8 people across
           frames, tracking, One-Euro smoothing and the SMPL-X mesh of the smoothed parameters,
           drawing), file writes left out
Upstream (a child process of --torch-python with torch + torchvision, its demo/demo.py path):
  detect   torchvision's fasterrcnn_resnet50_fpn, as upstream's demo runs it (random weights:
           the download is not possible offline; the cost is the architecture's)
  network  per person, as upstream's demo handles one: process_bbox, generate_patch_image,
           ToTensor and get_model('test') on a batch of 1, in torch.no_grad
  Upstream draws with pyrender (OpenGL), not run here: its 'picture' column leaves drawing
  out, which favours it. It has no video path.

Times are medians of --repeats runs. On a shared machine they move by tens of percent; both
sides run in turn on the same cores, with their libraries' default thread counts or --threads
each (fairer where other work competes for the cores: spinning thread pools suffer most).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _median(fn, repeats):
  fn()   # warm (compiles, caches)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def pictures():
  """{people: (RGB picture, boxes (N, 4) drawn around each astronaut)}."""
  import skimage.data
  one = skimage.data.astronaut()
  four = np.concatenate([np.concatenate([one, one], 1)] * 2, 0)
  box = np.array([20, 15, 345, 497], np.float64)
  return {1: (one, box[None]),
          4: (four, np.stack([box + [dx, dy, 0, 0] for dy in (0, 512) for dx in (0, 512)]))}


# ---------------------------------------------------------------------------
# Upstream side (child process: torch, torchvision, upstream's code)
# ---------------------------------------------------------------------------

def torch_side(work_dir: Path) -> None:
  work = json.loads((work_dir / 'work.json').read_text())
  import torch
  if os.environ.get('OMP_NUM_THREADS'):
    torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  root = Path(work['upstream'])
  for sub in ('main', 'data', 'common'):
    sys.path.insert(0, str(root / sub))
  import config  # upstream's
  config.cfg.human_model_path = work['human_model_path']
  sys.modules['utils.vis'] = types.ModuleType('utils.vis')
  sys.modules.setdefault('plyfile', types.SimpleNamespace(PlyData=None, PlyElement=None))
  import model as upstream_model
  import nets.resnet
  nets.resnet.ResNetBackbone.init_weights = lambda self: None   # ImageNet download
  from utils.preprocessing import process_bbox, generate_patch_image
  import torchvision.transforms as transforms
  from torchvision.models.detection import fasterrcnn_resnet50_fpn
  sys.path.insert(0, str(REPO / 'tests'))
  import fake_h4w
  net = upstream_model.get_model('test')
  full = net.state_dict()
  full.update({k.removeprefix('module.'): torch.from_numpy(v)
               for k, v in fake_h4w.fake_state_dict(fake_h4w.load_manifest()).items()})
  net.load_state_dict(full, strict=True)
  net.eval()
  detector = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
  to_tensor = transforms.ToTensor()
  results = {'label': f'torch {torch.__version__} on cpu ({torch.get_num_threads()} threads)'}
  for people in work['people']:
    data = np.load(work_dir / f'picture_{people}.npz')
    image, boxes = data['image'], data['boxes']

    def detect():
      with torch.no_grad():
        detector([to_tensor(image)])

    def network():
      for box in boxes:
        bbox = process_bbox(box.copy(), image.shape[1], image.shape[0])
        patch, _, _ = generate_patch_image(image, bbox, 1.0, 0.0, False,
                                           config.cfg.input_img_shape)
        with torch.no_grad():
          net({'img': (to_tensor(patch.astype(np.float32)) / 255)[None]}, {}, {}, 'test')

    results[str(people)] = {'detect': _median(detect, work['repeats']),
                            'network': _median(network, work['repeats'])}
    print(f'  upstream, {people} people: {results[str(people)]}', flush=True)
  (work_dir / 'torch_result.json').write_text(json.dumps(results))


# ---------------------------------------------------------------------------
# Our side
# ---------------------------------------------------------------------------

def our_side(hmf, repeats: int) -> dict:
  import jax
  sys.path.insert(0, str(REPO / 'tests'))
  import fake_h4w
  from h4w_jax.inference import demo, export, smoothing, tracking
  from h4w_jax.inference.predictor import Predictor, _predict
  from h4w_jax.inference.ssdlite import SSDLitePersonDetector
  from h4w_jax.models import hand4whole, outputs
  from h4w_jax.weights import keys
  variables = keys.torch_to_flax(fake_h4w.fake_state_dict(fake_h4w.load_manifest()),
                                 hand4whole.variable_shapes())
  predictor = Predictor(variables, outputs.smplx_layer(hmf), max_batch=8)
  faces = np.asarray(predictor.layer.faces)
  detector = SSDLitePersonDetector()
  results = {'label': f'jax {jax.__version__} on {jax.devices()[0].device_kind}'}
  for people, (image, boxes) in pictures().items():
    found = detector(image)
    dets = np.concatenate([boxes, np.ones((len(boxes), 1))], 1)

    def crop():
      return demo.people_in(image, dets, 'bench')

    persons = crop()
    crops = np.stack([p.crop for p in persons]).astype(np.float32) / 255

    start = time.perf_counter()
    jax.block_until_ready(_predict(predictor.config, predictor.variables, predictor.layer,
                                   np.zeros((len(persons),) + crops.shape[1:], np.float32)))
    compile_s = time.perf_counter() - start
    out = predictor(crops)
    item = demo.Item('bench', 0, image, persons)
    demo.attach(item, out)

    def picture():
      detector(image)   # timed; the drawn boxes are used (the same people)
      item = demo.Item('bench', 0, image, demo.people_in(image, dets, 'bench'))
      for i, p in enumerate(item.people):
        p.id = i
      demo.attach(item, predictor(np.stack([p.crop for p in item.people]).astype(np.float32)
                                  / 255))
      demo.draw_people(image, item.people, faces, 0.8, 2560)

    frames = 8

    def video():
      tracker, smoothers = tracking.Tracker(), {}

      def items():
        for i in range(frames):
          detector(image)   # timed; the drawn boxes are used (the same people)
          yield demo.Item(f'f{i}', i, image, demo.people_in(image, dets, 'bench'))

      for it, o in demo.predict(predictor, items(), 8):
        demo.attach(it, o)
        ids = tracker.update(it.index, np.stack([p.detection for p in it.people]))
        for p, i in zip(it.people, ids):
          p.id = int(i)
          p.params = smoothers.setdefault(p.id, smoothing.ParamSmoother())(it.index / 30,
                                                                            p.params)
        stacked = {k: np.stack([p.params[k] for p in it.people]) for k in export.PARAM_KEYS}
        for p, v in zip(it.people, predictor.body(stacked)['vertices']):
          p.vertices = v
        demo.draw_people(image, it.people, faces, 0.8, 2560)

    row = {
        'found': len(found), 'compile': compile_s,
        'detect': _median(lambda: detector(image), repeats),
        'crop': _median(crop, repeats),
        'network': _median(lambda: predictor(crops), repeats),
        'draw': _median(lambda: demo.draw_people(image, item.people, faces, 0.8, 2560),
                        repeats),
        'picture': _median(picture, repeats),
        'video_frame': _median(video, max(1, repeats // 2)) / frames,
    }
    results[str(people)] = row
    print(f'  ours, {people} people: ' + ', '.join(f'{k} {v:.3f}' for k, v in row.items()),
          flush=True)
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--upstream', type=Path, default=None,
                      help='a Hand4Whole_RELEASE checkout (main branch); none: ours only')
  parser.add_argument('--torch-python', default=sys.executable,
                      help='interpreter with torch + torchvision for the upstream side')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='human_model_files (default: synthetic chumpy-free files)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--threads', type=int, default=0,
                      help='threads per side (torch.set_num_threads, XLA intra-op, BLAS); '
                           '0: the libraries\' defaults')
  parser.add_argument('--_torch-side', dest='torch_side', type=Path, default=None,
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.threads:
    n = str(args.threads)
    os.environ.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen='
                               f'{"true" if args.threads > 1 else "false"} '
                               f'intra_op_parallelism_threads={n}').strip()
  if args.torch_side is not None:
    return torch_side(args.torch_side)

  tmp = tempfile.TemporaryDirectory(prefix='h4w_demo_bench_')
  work_dir = Path(tmp.name)
  hmf = args.human_model_path
  if hmf is None:
    from smplx_jax import synthetic as body_synthetic
    print(f'Writing chumpy-free synthetic body models to {work_dir / "hmf"} ...', flush=True)
    hmf = body_synthetic.write_human_model_files(work_dir / 'hmf', seed=0, chumpy=False)
  print(f'{os.cpu_count()} CPUs, load average {os.getloadavg()}', flush=True)
  ours = our_side(hmf, args.repeats)
  theirs = {}
  if args.upstream is not None:
    for people, (image, boxes) in pictures().items():
      np.savez(work_dir / f'picture_{people}.npz', image=image, boxes=boxes)
    (work_dir / 'work.json').write_text(json.dumps({
        'upstream': str(args.upstream.resolve()), 'human_model_path': str(hmf),
        'repeats': args.repeats, 'people': [1, 4]}))
    print('Upstream side (child process):', flush=True)
    subprocess.run([args.torch_python, str(Path(__file__).resolve()), '--_torch-side',
                    str(work_dir)], check=True)
    theirs = json.loads((work_dir / 'torch_result.json').read_text())

  print(f'\nOurs: {ours["label"]}' + (f'; upstream: {theirs["label"]}' if theirs else '')
        + f'; load average after {os.getloadavg()}')
  print(f'{"people":>6} {"side":>9} {"detect ms":>10} {"crop ms":>8} {"network ms":>11} '
        f'{"draw ms":>8} {"pictures/s":>11} {"frames/s":>9} {"compile s":>10}')
  for people in ('1', '4'):
    r = ours[people]
    print(f'{people:>6} {"ours":>9} {r["detect"] * 1e3:10.0f} {r["crop"] * 1e3:8.1f} '
          f'{r["network"] * 1e3:11.0f} {r["draw"] * 1e3:8.0f} {1 / r["picture"]:11.2f} '
          f'{1 / r["video_frame"]:9.2f} {r["compile"]:10.1f}   (detector found {r["found"]})')
    if theirs:
      t = theirs[people]
      total = t['detect'] + t['network']
      print(f'{people:>6} {"upstream":>9} {t["detect"] * 1e3:10.0f} {"(in net)":>8} '
            f'{t["network"] * 1e3:11.0f} {"-":>8} {1 / total:11.2f} {"-":>9} {"-":>10}'
            f'   ratio pictures/s ours/upstream {total / r["picture"]:.2f}')
  tmp.cleanup()


if __name__ == '__main__':
  main()
