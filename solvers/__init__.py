"""Optax-compatible pruning solvers (ADMM, SLR, reweighted group lasso, magnitude), hard pruning
and masked retraining (DESIGN §3). Not built yet: see the solvers issue."""
