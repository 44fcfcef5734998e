"""The layout's contract: which package may import which (h4w_jax/__init__.py draws it).

Dependencies point one way: body models (smplx_jax) <- common <- networks (models) <-
weights <- training, evaluation, inference; the input pipeline (h4w_datasets) knows no
network, metric or training code. Every import in every module counts, including the
ones inside functions.
"""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the name it installs as.
SOURCES = {'smplx_jax': 'smplx_jax', 'h4w_jax': 'h4w_jax', 'datasets': 'h4w_datasets'}

_BASE = {'smplx_jax', 'h4w_jax.common'}
_ABOVE_WEIGHTS = _BASE | {'h4w_jax.models', 'h4w_jax.weights', 'h4w_datasets'}
# Layer -> the layers it may import (itself always). Longest matching prefix wins; the
# top-level h4w_jax modules are the command-line entry points and may import anything.
ALLOWED = {
    'smplx_jax': set(),
    'h4w_jax.common': {'smplx_jax'},
    'h4w_datasets': _BASE,
    'h4w_jax.models': _BASE,
    'h4w_jax.weights': _BASE | {'h4w_jax.models'},
    'h4w_jax.training': _ABOVE_WEIGHTS,
    'h4w_jax.evaluation': _ABOVE_WEIGHTS,
    'h4w_jax.inference': _ABOVE_WEIGHTS,
    'h4w_jax': None,
}


def layer_of(module: str) -> str | None:
  matches = [layer for layer in ALLOWED if module == layer or module.startswith(layer + '.')]
  return max(matches, key=len) if matches else None


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
  """(line, module) for every import of the file; `from pkg import name` counts as pkg.name
  (a submodule or a name of pkg: both belong to pkg's layer or below it)."""
  tree = ast.parse(path.read_text(), str(path))
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:   # relative: resolve against this module's package
        package = module.rsplit('.', node.level)[0]
        base = f'{package}.{base}' if base else package
      out += [(node.lineno, f'{base}.{alias.name}') for alias in node.names]
  return out


def import_violations(root: Path, sources=SOURCES) -> list[str]:
  problems = []
  for folder, name in sources.items():
    for path in sorted((root / folder).rglob('*.py')):
      relative = path.relative_to(root / folder).with_suffix('')
      parts = [p for p in relative.parts if p != '__init__']
      module = '.'.join([name, *parts])
      layer = layer_of(module)
      if layer is None or ALLOWED[layer] is None:
        continue
      for line, imported in imported_modules(path, module):
        target = layer_of(imported)
        if target is None or target == layer or target in ALLOWED[layer]:
          continue
        problems.append(f'{path.relative_to(root)}:{line}: {layer} imports {imported} '
                        f'({target}); it may import {sorted(ALLOWED[layer]) or "nothing of ours"}')
  return problems


def test_imports_point_one_way():
  problems = import_violations(ROOT)
  assert not problems, '\n'.join(problems)


def test_a_violation_is_found(tmp_path):
  """The checker sees imports at module level, inside functions and relative ones."""
  (tmp_path / 'datasets').mkdir()
  (tmp_path / 'datasets' / 'reader.py').write_text(
      'from h4w_jax.common import spaces\n'
      'def f():\n  from h4w_jax.models import hand4whole\n')
  (tmp_path / 'h4w_jax' / 'evaluation').mkdir(parents=True)
  (tmp_path / 'h4w_jax' / 'evaluation' / 'loop.py').write_text(
      'from ..training import checkpoints\nimport h4w_jax.weights.files\n')
  (tmp_path / 'h4w_jax' / 'models').mkdir()
  (tmp_path / 'h4w_jax' / 'models' / 'net.py').write_text('from h4w_jax import inference\n')
  problems = import_violations(tmp_path, {'datasets': 'h4w_datasets', 'h4w_jax': 'h4w_jax'})
  where = sorted(':'.join(p.split(':')[:2]) for p in problems)
  assert where == ['datasets/reader.py:3', 'h4w_jax/evaluation/loop.py:1',
                   'h4w_jax/models/net.py:1'], problems
  assert any('h4w_datasets imports h4w_jax.models.hand4whole' in p for p in problems)
  assert any('h4w_jax.evaluation imports h4w_jax.training.checkpoints' in p for p in problems)


def test_every_package_is_installed():
  """pyproject lists every package folder, so a non-editable install has them all."""
  config = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']
  folders = {name: ROOT / config.get('package-dir', {}).get(name, name.replace('.', '/'))
             for name in config['packages']}
  found = set()
  for folder, name in SOURCES.items():
    for init in (ROOT / folder).rglob('__init__.py'):
      parts = init.parent.relative_to(ROOT / folder).parts
      found.add('.'.join([name, *parts]))
  found.add('h4w_datasets')   # a folder without __init__.py (never shadows HF datasets)
  assert set(folders) == found
  assert all(path.is_dir() for path in folders.values())
