"""Checks a `human_model_files` folder: what is present, missing or malformed.

    python -m smplx_jax.check PATH [--need model|eval|all]

PATH is laid out as Hand4Whole's `common/utils/human_model_files`. Each file is
opened with the same readers `create` uses (no chumpy, no plain pickle) and
checked for its keys and shapes. The table says where each file comes from.
Exit status: 1 if a file is malformed or a file needed for `--need` is
missing, else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable

from smplx_jax import extras, model_files

SMPLX_SITE = 'https://smpl-x.is.tue.mpg.de (Download: SMPL-X v1.1, models/smplx/)'
SMPLX_EXTRA_SITE = ('https://smpl-x.is.tue.mpg.de (Download: "MANO and FLAME vertex '
                    'indices", SMPL-X v1.1 page)')
J14_SITE = 'https://expose.is.tue.mpg.de (Download: ExPose data, data/SMPLX_to_J14.pkl)'
SMPL_SITE = ('https://smpl.is.tue.mpg.de (male/female: basicmodel_{m,f}_lbs_10_207_0_v1.0.0.pkl) '
             'and https://smplify.is.tue.mpg.de (neutral: basicModel_neutral_lbs_10_207_0_v1.0.0.pkl), '
             'renamed')
MANO_SITE = 'https://mano.is.tue.mpg.de (Download: mano_v1_2, models/MANO_{LEFT,RIGHT}.pkl)'
FLAME_SITE = 'https://flame.is.tue.mpg.de (FLAME 2020: generic_model.pkl, renamed)'
FLAME_EMBED_SITE = ('https://flame.is.tue.mpg.de (FLAME landmark embeddings; also shipped in '
                    "the TF_FLAME and DECA repositories' data folders)")

NEEDS = {
    'model': 'the Hand4Whole network and training (SMPL-X, all three genders)',
    'eval': 'evaluation (EHF/AGORA part metrics, 3DPW with SMPL)',
    'hand': 'the hand-only stage (MANO)',
    'face': 'FLAME models (Pose2Pose face-only)',
    'optional': 'create(..., ext="pkl") only (optional)',
}


@dataclasses.dataclass(frozen=True)
class ExpectedFile:
  relpath: str
  need: str
  source: str
  check: Callable[[Path], str]  # returns a short summary or raises


def _model_check(schema: str) -> Callable[[Path], str]:
  def check(path: Path) -> str:
    data = model_files.load(path, schema)
    sizes = model_files.OFFICIAL_SIZES.get(schema)
    summary = ', '.join(f'{k} {v.shape}' for k, v in list(data.items())[:3])
    if sizes:
      found = {'V': data['v_template'].shape[0], 'F': data['f'].shape[0],
               'J': data['J_regressor'].shape[0]}
      off = {k: (found[k], v) for k, v in sizes.items() if found[k] != v}
      if off:
        raise model_files.ModelFileError(
            f'{path}: sizes {found} differ from the released model\'s {sizes}')
      summary = f"V={found['V']} F={found['F']} J={found['J']} shape components={data['shapedirs'].shape[-1]}"
    return summary
  return check


def _extra_check(loader) -> Callable[[Path], str]:
  def check(path: Path) -> str:
    value = loader(path.parent)
    if isinstance(value, dict):
      return ', '.join(f'{k} {v.shape}' for k, v in value.items())
    return f'{value.shape}'
  return check


def expected_files() -> list[ExpectedFile]:
  files = []
  for gender in ('NEUTRAL', 'MALE', 'FEMALE'):
    files.append(ExpectedFile(f'smplx/SMPLX_{gender}.npz', 'model', SMPLX_SITE,
                              _model_check('smplx')))
  for gender in ('NEUTRAL', 'MALE', 'FEMALE'):
    files.append(ExpectedFile(f'smplx/SMPLX_{gender}.pkl', 'optional', SMPLX_SITE,
                              _model_check('smplx')))
  files += [
      ExpectedFile(f'smplx/{extras.J14_FILE}', 'eval', J14_SITE,
                   _extra_check(extras.load_j14_regressor)),
      ExpectedFile(f'smplx/{extras.HAND_IDS_FILE}', 'eval', SMPLX_EXTRA_SITE,
                   _extra_check(extras.load_hand_vertex_ids)),
      ExpectedFile(f'smplx/{extras.FACE_IDS_FILE}', 'eval', SMPLX_EXTRA_SITE,
                   _extra_check(extras.load_face_vertex_ids)),
  ]
  for gender in ('NEUTRAL', 'MALE', 'FEMALE'):
    files.append(ExpectedFile(f'smpl/SMPL_{gender}.pkl', 'eval', SMPL_SITE,
                              _model_check('smpl')))
  for side in ('LEFT', 'RIGHT'):
    files.append(ExpectedFile(f'mano/MANO_{side}.pkl', 'hand', MANO_SITE,
                              _model_check('mano')))
  files += [
      ExpectedFile('flame/FLAME_NEUTRAL.pkl', 'face', FLAME_SITE, _model_check('flame')),
      ExpectedFile('flame/flame_static_embedding.pkl', 'face', FLAME_EMBED_SITE,
                   lambda p: ', '.join(f'{k} {v.shape}' for k, v in model_files.load(
                       p, 'flame_static_embedding').items())),
      ExpectedFile('flame/flame_dynamic_embedding.npy', 'face', FLAME_EMBED_SITE,
                   lambda p: ', '.join(f'{k} {v.shape}' for k, v in model_files.load(
                       p, 'flame_dynamic_embedding').items())),
  ]
  return files


def check_folder(root: str | Path) -> list[tuple[ExpectedFile, str, str]]:
  """[(file, status in {'ok', 'missing', 'malformed'}, detail)] for each file."""
  root = Path(root)
  rows = []
  for expected in expected_files():
    path = root / expected.relpath
    if not path.exists():
      rows.append((expected, 'missing', ''))
      continue
    try:
      rows.append((expected, 'ok', expected.check(path)))
    except (model_files.ModelFileError, ValueError) as e:
      rows.append((expected, 'malformed', str(e)))
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('path', help='the human_model_files folder')
  parser.add_argument('--need', choices=['model', 'eval', 'all'], default='model',
                      help='which files must be present for exit status 0')
  args = parser.parse_args(argv)
  root = Path(args.path)
  if not root.is_dir():
    print(f'{root}: not a folder. Create it and put the body-model files in it as listed '
          'in the README ("Body-model files").', file=sys.stderr)
    return 1
  needed = {'model': {'model'}, 'eval': {'model', 'eval'},
            'all': {'model', 'eval', 'hand', 'face'}}[args.need]
  rows = check_folder(root)
  failed = False
  print(f'Body-model files under {root}:')
  for expected, status, detail in rows:
    mark = {'ok': 'ok       ', 'missing': 'MISSING  ', 'malformed': 'MALFORMED'}[status]
    print(f'  {mark} {expected.relpath:40s} used by {NEEDS[expected.need]}')
    if status == 'ok':
      print(f'            {detail}')
    elif status == 'malformed':
      print(f'            {detail}')
      failed = True
    if status != 'ok':
      print(f'            get it from: {expected.source}')
    if status == 'missing' and expected.need in needed:
      failed = True
  print('Result:', 'some needed files are missing or malformed' if failed
        else f'everything needed for --need {args.need} is in place')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
