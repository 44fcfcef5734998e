"""The networks and what turns their predictions into upstream's outputs and losses.

resnet (torchvision-named backbones, torch-exact BatchNorm), roi_align, geometry
(soft-argmax, 6D rotations, boxes, camera), hand4whole (the whole-body network),
outputs (test-mode dict, training losses), targets (SMPL-X targets on the device);
stage 2's hand-only model: hand_only, hand_outputs, hand_targets (MANO targets).
Imports h4w_jax.common and smplx_jax only.
"""
