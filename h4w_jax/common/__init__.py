"""What several packages share: Hand4Whole's image/heatmap/camera spaces, joint sets,
fixed dataset constants, the device mesh and sharding rules, meshes drawn over images.

Imports nothing of h4w_jax; may import smplx_jax. The input pipeline (h4w_datasets)
imports from here and from nowhere else in h4w_jax.
"""
