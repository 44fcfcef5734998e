"""The train step compiled for 8 fake devices and read from its HLO: pod-scale properties.

Each mesh compiles (never runs) the exact step of training.loop in a fresh process
(`python -m h4w_jax.training.scaling`: the device count and the XLA dump are fixed
when JAX starts) with ResNet-10 backbones, one sample per device, per-device
BatchNorm. What is asserted, from the module right after SPMD partitioning:
  * no all-gather of anything but parameters and optimizer state (the image batch,
    crops and activations stay split by sample), no all-to-all, no permute;
  * collective bytes per device within 1.5x the analytic need (data parallel: the
    gradients' all-reduce; fsdp: parameters gathered, gradients reduce-scattered,
    shards all-reduced over data). Measured with ResNet-10 (24.4 M parameters,
    97.4 MB): 1.00x (8,1) f32, 1.32x (4,2) f32, 1.33x (1,8) f32; bf16 0.50x-0.65x
    (bf16 gradients are reduced in bf16);
  * with compute_dtype=bfloat16 every convolution computes in bf16, with float32
    every one in f32.
Before this design (gathered crops, no activation pins) the same step moved the
whole image batch and fsdp split activations by channel: 1085 MiB of collectives
per device at (4,2) for ResNet-50/50/18 against ~520 MiB needed.
The default suite compiles one mesh that has both axes; `-m slow` compiles the
other three.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _report(tmp_path, human_model_files, mesh, dtype):
  out = tmp_path / 'report.json'
  cmd = [sys.executable, '-m', 'h4w_jax.training.scaling', '--devices', '8', '--mesh', mesh,
         '--depths', '10,10,10', '--per-device-batch', '1', '--dtype', dtype,
         '--human-model-path', str(human_model_files), '--json', str(out)]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(out.read_text())


def _check(report, dtype):
  mesh = report['mesh']
  assert report['devices'] == 8 and mesh['data'] * mesh['fsdp'] == 8
  assert report['non_parameter_all_gathers'] == [], report['non_parameter_all_gathers'][:5]
  got = report['collective_bytes']
  assert got['all-to-all'] == 0 and got['collective-permute'] == 0, got
  need = report['analytic_need']['total']
  assert got['total'] <= 1.5 * need, (got, report['analytic_need'])
  convs = report['convolution_dtypes']
  want = 'bf16' if dtype == 'bfloat16' else 'f32'
  assert set(convs) == {want} and convs[want] > 100, convs


@pytest.mark.parametrize('mesh,dtype', [('2,4', 'bfloat16')])
def test_step_keeps_the_batch_sharded(tmp_path, clean_human_model_files, mesh, dtype):
  _check(_report(tmp_path, clean_human_model_files, mesh, dtype), dtype)


@pytest.mark.slow
@pytest.mark.parametrize('mesh,dtype', [('8,1', 'float32'), ('4,2', 'float32'),
                                        ('1,8', 'bfloat16')])
def test_step_keeps_the_batch_sharded_on_every_mesh(tmp_path, clean_human_model_files, mesh,
                                                    dtype):
  _check(_report(tmp_path, clean_human_model_files, mesh, dtype), dtype)
