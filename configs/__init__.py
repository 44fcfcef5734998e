"""Run-book configs: `python train.py --config configs/<name>.py`, `python eval.py --config ...`."""
