"""Reading compiled programs: collectives, convolution dtypes, matmul precision, portability.

What runs on a pod is checked here without the pod: a function is compiled for
fake CPU devices (`jax_num_cpu_devices`) and its HLO is read, or lowered for
`cuda`/`tpu` (`jax.jit(f).trace(...).lower(lowering_platforms=...)`) and its
StableHLO is read. Which text to read matters:

* The module right after SPMD partitioning (per device, collectives inserted,
  dtypes as written) is the one for collective bytes and convolution dtypes.
  It exists only as an XLA dump: `dump_flags(dir)` must be in XLA_FLAGS
  before JAX starts its backend; `find_dump` finds the file. The final CPU
  HLO is not representative of an accelerator: CPU rewrites every bf16
  convolution to f32 and its combiners merge collectives.
* StableHLO (`lowered.as_text()`) shows each matmul's requested precision:
  `precision = [HIGHEST, HIGHEST]`, DEFAULT printed as `[DEFAULT, DEFAULT]`.

Bytes of a collective are those of its full buffer on one device: an
all-gather's result, an all-reduce's operand (= result), a reduce-scatter's
operand (group size x result), an all-to-all's or collective-permute's result. CPU's partitioner writes
reduce-scatter as all-reduce + dynamic-slice, which this counting treats alike.
"""

from __future__ import annotations

import glob
import math
import os
import re
from typing import NamedTuple

DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 's32': 4, 'u32': 4, 's64': 8,
               'u64': 8, 'f16': 2, 'bf16': 2, 'f32': 4, 'f64': 8, 'c64': 8, 'c128': 16}
COLLECTIVES = ('all-gather', 'all-reduce', 'reduce-scatter', 'all-to-all', 'collective-permute')
# Custom calls and ops that only the host runs: a step must contain none of them.
HOST_ONLY = ('xla_python_cpu_callback', 'xla_ffi_python_cpu_callback', 'xla_python_gpu_callback',
             'xla_ffi_python_gpu_callback', 'host_callback', 'lapack_', '__cpu')

_ARRAY = re.compile(r'\b(pred|bf16|[subfc]\d+)\[([0-9,]*)\]')
_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\((.*)$')


class Array(NamedTuple):
  dtype: str
  shape: tuple[int, ...]

  @property
  def nbytes(self) -> int:
    return DTYPE_BYTES.get(self.dtype, 0) * math.prod(self.shape)


class Collective(NamedTuple):
  kind: str
  arrays: tuple[Array, ...]      # the full buffer(s) counted

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self.arrays)


def arrays(type_text: str) -> tuple[Array, ...]:
  return tuple(Array(d, tuple(int(x) for x in s.split(',') if x))
               for d, s in _ARRAY.findall(type_text))


def _instructions(hlo_text: str):
  """(result type text, opcode, rest of the line) of every HLO instruction."""
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if m:
      yield m.group(1), m.group(2), m.group(3)


def group_size(attributes: str) -> int:
  """Devices per replica group of a collective's attributes (1 when not stated)."""
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attributes)
  if m:   # mesh['axis_0'=4,'axis_1'=2] {'axis_0'}: the named axes form a group
    sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'(\w+)'", m.group(2)))
  m = re.search(r'replica_groups=\{\{([0-9,]*)\}', attributes)
  if m:
    return len(m.group(1).split(','))
  m = re.search(r'replica_groups=\[\d+,(\d+)\]', attributes)   # iota form [groups,size]
  return int(m.group(1)) if m else 1


def collectives(hlo_text: str) -> list[Collective]:
  """Every collective of an HLO module (async -start ops count once, -done not at all)."""
  out = []
  for result, opcode, rest in _instructions(hlo_text):
    kind = opcode.removesuffix('-start')
    if kind not in COLLECTIVES or opcode.endswith('-done'):
      continue
    buffers = arrays(result)
    if opcode.endswith('-start') and kind == 'all-gather':
      buffers = buffers[len(buffers) // 2:]   # (operands..., results...)
    if kind == 'reduce-scatter':               # the full operand: n times the result
      n = group_size(rest)
      buffers = tuple(Array(a.dtype, (a.shape[0] * n,) + a.shape[1:]) for a in buffers)
    out.append(Collective(kind, buffers))
  return out


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Bytes per device per call by collective kind (and 'total')."""
  totals = {kind: 0 for kind in COLLECTIVES}
  for c in collectives(hlo_text):
    totals[c.kind] += c.nbytes
  totals['total'] = sum(totals.values())
  return totals


def convolutions(hlo_text: str) -> list[Array]:
  """The result (dtype, shape) of every convolution: the dtype it computes in."""
  return [arrays(result)[0] for result, opcode, _ in _instructions(hlo_text)
          if opcode == 'convolution']


def convolution_dtypes(hlo_text: str) -> dict[str, int]:
  counts: dict[str, int] = {}
  for a in convolutions(hlo_text):
    counts[a.dtype] = counts.get(a.dtype, 0) + 1
  return counts


_DOT = re.compile(r'stablehlo\.dot_general.*')
_PRECISION = re.compile(r'precision\s*=\s*\[(\w+),\s*(\w+)\]')


def dot_precisions(stablehlo_text: str) -> dict[str, int]:
  """How many dot_generals of a StableHLO module ask for each precision (none: DEFAULT)."""
  counts: dict[str, int] = {}
  for line in stablehlo_text.splitlines():
    if 'stablehlo.dot_general' not in line:
      continue
    m = _PRECISION.search(line)
    key = m.group(1) if m else 'DEFAULT'
    counts[key] = counts.get(key, 0) + 1
  return counts


def portability_problems(stablehlo_text: str) -> list[str]:
  """What keeps a module lowered for an accelerator from running there: host callbacks,
  CPU-only custom calls, 64-bit floats."""
  problems = []
  for target in sorted(set(re.findall(r'custom_call\s*@([\w.]+)', stablehlo_text)) |
                       set(re.findall(r'call_target_name\s*=\s*"([^"]+)"', stablehlo_text))):
    if any(bad in target for bad in HOST_ONLY):
      problems.append(f'host-only custom call {target}')
  if re.search(r'[x<\s(,:]f64\b', stablehlo_text):   # tensor<3xf64>, tensor<f64>
    problems.append('float64 values')
  return problems


def dump_flags(directory: str) -> str:
  """XLA_FLAGS that dump each module right after SPMD partitioning into `directory`."""
  return (f'--xla_dump_to={directory} --xla_dump_hlo_as_text '
          '--xla_dump_hlo_pass_re=spmd-partitioning')


def find_dump(directory: str, name: str) -> str:
  """The text of the newest after-SPMD-partitioning dump of jitted function `name`."""
  pattern = os.path.join(directory, f'module_*.jit_{name}.*after_spmd-partitioning*.txt')
  files = sorted(glob.glob(pattern), key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f'no after-SPMD dump of jit_{name} in {directory} (were '
                            'dump_flags() in XLA_FLAGS before JAX started?)')
  with open(files[-1]) as f:
    return f.read()
