"""smplx_jax: SMPL, SMPL-X, MANO and FLAME in JAX, with the `smplx` API.

    import smplx_jax
    model = smplx_jax.create('human_model_files', 'smplx', use_pca=False)
    out = model(betas=betas, body_pose=body_pose)      # a pytree
    out.vertices, out.joints                            # (B, 10475, 3), (B, 127, 3)

The model is a pytree of arrays with static settings: pass it into `jax.jit`
functions, `vmap` the forward, take gradients of anything it returns.
"""

from smplx_jax.body_models import FLAME, MANO, SMPL, SMPLX, ModelOutput, forward
from smplx_jax.builders import create
from smplx_jax.model_files import ModelFileError
from smplx_jax.safe_pickle import UnsafePickleError

__all__ = ['create', 'forward', 'SMPL', 'SMPLX', 'MANO', 'FLAME', 'ModelOutput',
           'ModelFileError', 'UnsafePickleError']
