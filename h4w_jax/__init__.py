"""Hand4Whole in JAX/Flax: the whole-body model, its primitive ops and its heads."""
