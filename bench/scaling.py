"""Scaling report: the train step per mesh on fake devices, and its speed on a real GPU.

    python bench/scaling.py                                  # fake CPU devices (any machine)
    python bench/scaling.py --gpu --upstream CHECKOUT        # one GPU, < 8 minutes

Fake devices (`h4w_jax.training.scaling`, one fresh process per configuration;
compiled, never run): per mesh (data x fsdp) of --devices, at stage-1 sizes by
default (ResNet-50/50/18, --per-device-batch samples per device), the collective
bytes per device per step read from the module after SPMD partitioning, next
to the analytic need (data parallel: all-reduce of the gradients; fsdp:
all-gather of the parameters + reduce-scatter of the gradients + all-reduce of
the shards over data), whether anything but parameters is all-gathered, the
convolution dtypes, FLOPs per sample from XLA's cost_analysis next to the
analytic ~96 GFLOP (3x the forward's ~32 GFLOP at 512x384), XLA's temp memory
per sample, the activations kept for the backward per sample with
config.model.remat 'none' and 'blocks', and the compile time.

--gpu: bench/train_throughput.py on the visible GPU, float32 and bfloat16 at the
largest batch that fits (XLA's memory estimate), samples/s and MFU (XLA's
FLOPs per second over --peak-tflops), next to upstream's PyTorch step on the
same GPU in the same run, float32 and bf16 autocast with channels_last. It
needs --upstream (a Hand4Whole_RELEASE checkout) and an interpreter with torch
+ torchvision for CUDA (--torch-python).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANALYTIC_GFLOP = 96.0   # forward + backward per sample, stage-1 sizes (issue 12's estimate)


def fake_device_report(mesh: str, dtype: str, remat: str, args) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / 'report.json'
    cmd = [sys.executable, '-m', 'h4w_jax.training.scaling', '--devices', str(args.devices),
           '--mesh', mesh, '--depths', args.depths, '--per-device-batch',
           str(args.per_device_batch), '--dtype', dtype, '--remat', remat, '--json', str(out)]
    if args.human_model_path:
      cmd += ['--human-model-path', args.human_model_path]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
      raise SystemExit(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
    return json.loads(out.read_text())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--devices', type=int, default=8)
  parser.add_argument('--meshes', nargs='+', default=['8,1', '4,2', '2,4', '1,8'])
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
  parser.add_argument('--depths', default='50,50,18')
  parser.add_argument('--per-device-batch', type=int, default=2)
  parser.add_argument('--human-model-path', default=None)
  parser.add_argument('--json', default=None, help='write every report here')
  parser.add_argument('--gpu', action='store_true', help='time the step on the visible GPU')
  parser.add_argument('--upstream', default=None, help='Hand4Whole_RELEASE checkout (--gpu)')
  parser.add_argument('--torch-python', default=sys.executable)
  parser.add_argument('--peak-tflops', type=float, default=989.0,
                      help='dense bf16 peak of the GPU (H100/H200 SXM: 989)')
  args = parser.parse_args(argv)

  if args.gpu:
    cmd = [sys.executable, str(REPO / 'bench' / 'train_throughput.py'), '--configs', 'default',
           '--batches', 'auto', '--dtypes', 'float32', 'bfloat16', '--repeats', '5',
           '--min-time', '3', '--peak-tflops', str(args.peak_tflops)]
    cmd += (['--upstream', args.upstream, '--torch-python', args.torch_python,
             '--torch-device', 'cuda', '--torch-amp'] if args.upstream else ['--device-only'])
    return subprocess.run(cmd, cwd=REPO).returncode

  reports = []
  print(f'{args.devices} fake CPU devices, ResNets {args.depths}, {args.per_device_batch} '
        'samples per device; MiB per device per step', flush=True)
  print(f'{"mesh":>6} {"dtype":>9} {"collectives":>12} {"need":>8} {"ratio":>6} '
        f'{"non-param AG":>13} {"convs":>14} {"GFLOP/sample":>13} {"temp MiB/s":>11} '
        f'{"act MiB/s":>10} {"remat":>8} {"compile s":>10}', flush=True)
  for mesh in args.meshes:
    for dtype in args.dtypes:
      for remat in ('none', 'blocks') if dtype == args.dtypes[0] and mesh == args.meshes[0] \
          else ('none',):
        r = fake_device_report(mesh, dtype, remat, args)
        reports.append(r)
        got, need = r['collective_bytes']['total'], r['analytic_need']['total']
        convs = ','.join(f'{k}:{v}' for k, v in sorted(r['convolution_dtypes'].items()))
        print(f'{mesh:>6} {dtype:>9} {got / 2**20:12.1f} {need / 2**20:8.1f} '
              f'{got / max(need, 1):6.2f} {r["non_parameter_all_gather_bytes"] / 2**20:13.2f} '
              f'{convs:>14} {r["flops_per_sample"] / 1e9:13.1f} '
              f'{r["temp_bytes_per_sample"] / 2**20:11.0f} '
              f'{r["saved_activation_bytes_per_sample"] / 2**20:10.0f} {remat:>8} '
              f'{r["compile_seconds"]:10.0f}', flush=True)
  print(f'analytic FLOPs per sample: ~{ANALYTIC_GFLOP:.0f} GFLOP (forward + backward, stage-1 '
        'sizes); parameters: '
        f'{reports[0]["param_count"] / 1e6:.1f} M ({reports[0]["param_bytes"] / 2**20:.1f} MiB)')
  if args.json:
    Path(args.json).write_text(json.dumps(reports, indent=1) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
