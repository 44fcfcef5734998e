"""What stops a run from going wrong silently: non-finite steps, divergence, hangs.

* `non_finite_message`: the error for a step the guard refused (step.train_step
  applies no update whose loss, gradients, new parameters or new optimizer
  state are not finite), with advice that fits what was non-finite.
* `DivergenceMonitor`: a warning when the logged loss jumps far above its
  running level or grows for several logs in a row (a diverging run stays
  finite for a long time: loss 6e21 is a number).
* `Watchdog`: exits the process with a clear message when the loop makes no
  progress for a while. A peer process that died can leave the others blocked
  in a collective forever on some backends (on CPU the collective fails at
  once, and the loop reports that instead).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

from h4w_jax.training import step as step_lib


def non_finite_message(step: int, bad_parts: int, lr: float, checkpoint_dir,
                       last_good_step: int | None) -> str:
  what = step_lib.describe_guard_bits(bad_parts)
  loss_and_grads_ok = not bad_parts & 0b11
  if loss_and_grads_ok and not math.isfinite(lr):
    advice = f'the learning rate at that step is {lr}: set config.lr to a finite value'
  elif loss_and_grads_ok:
    advice = ('the loss and gradients were finite but the update was not: lower config.lr '
              f'(now {lr:.3g} at that step) or set config.grad_clip_norm')
  else:
    advice = ('lower config.lr or set config.grad_clip_norm; if the data may hold bad '
              'samples, check the warnings above')
  where = (f'the newest checkpoint is step {last_good_step} in {checkpoint_dir} (every saved '
           'state passed the same check)' if last_good_step is not None
           else f'no checkpoint was saved yet in {checkpoint_dir}')
  return (f'step {step}: non-finite {what}; the update was not applied and nothing was saved '
          f'after it. {where}. Fix: {advice}, then run again: training resumes from the newest '
          'checkpoint.')


class DivergenceMonitor:
  """Warns when the logged loss is `factor` times its running level (the median of the
  logs so far), or has grown at `growing_logs` logs in a row."""

  def __init__(self, factor: float = 10.0, growing_logs: int = 5):
    self.factor = factor
    self.growing_logs = growing_logs
    self._history: list[float] = []
    self._growing = 0

  def update(self, step: int, loss: float) -> str | None:
    history = self._history
    message = None
    if history:
      level = sorted(history)[len(history) // 2]
      self._growing = self._growing + 1 if loss > history[-1] else 0
      if self.factor and level > 0 and loss > self.factor * level:
        message = (f'step {step}: the loss {loss:.4g} is {loss / level:.1f}x its running level '
                   f'{level:.4g}: the run may be diverging (lower config.lr or set '
                   'config.grad_clip_norm)')
      elif self.growing_logs and self._growing >= self.growing_logs:
        message = (f'step {step}: the loss has grown at {self._growing} logs in a row '
                   f'({history[-self._growing]:.4g} -> {loss:.4g}): the run may be diverging')
    history.append(loss)
    return message


class Watchdog:
  """Ends the process (exit code 3) with `message` when `beat()` is not called for
  `timeout` seconds. 0 turns it off."""

  def __init__(self, timeout: float, message: str):
    self.timeout = timeout
    self.message = message
    self._last = time.monotonic()
    self._where = 'start'
    self._stop = threading.Event()
    if timeout > 0:
      threading.Thread(target=self._watch, name='h4w-watchdog', daemon=True).start()

  def beat(self, where: str) -> None:
    self._last = time.monotonic()
    self._where = where

  def _watch(self) -> None:
    while not self._stop.wait(min(1.0, self.timeout / 4)):
      idle = time.monotonic() - self._last
      if idle > self.timeout:
        print(f'error: no progress for {idle:.0f} s (last: {self._where}). {self.message}',
              file=sys.stderr, flush=True)
        os._exit(3)

  def close(self) -> None:
    self._stop.set()
