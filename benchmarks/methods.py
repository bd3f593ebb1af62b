"""The solve-phase methods of the studies and speed benchmarks, with every hyperparameter in one
place: a method is a frozen dataclass of its hyperparameters whose ``transform(phase)`` is the
optax chain of its solver and Adam for one ``SolvePhase``.

ADMM and SLR wrap Adam (their decoupled form); solvers that add a penalty gradient (the coupled
ADMM and SLR, the subgradient group lasso) go before Adam; those that act on Adam's proposed step
(magnitude, the proximal group lasso) go after it (docs/solvers.md). Where experiments tune the
same method name differently, each has its own registry of distinct instances, so every value
that differs stands next to the others:

* ``CONVERGENCE`` — the pruning studies (convergence, structures and blocks; forms uses its
  ``admm``, allocation its ``gradual``, rt3 its ``rgl``): ADMM and SLR decoupled, with the default
  pull (0.03 → 1 over the solve phase's Z-updates) and SLR's reference constants; RGL proximal
  with λ per leaf from ``solvers.rgl_lambda`` and α from the dense start (never refreshed, as the
  authors' scripts); magnitude one-shot; gradual magnitude on Zhu & Gupta's cubic ramp over the
  first ¾ of the solve phase.
* ``SUPPORT`` — support recovery on tiny least squares: coupled ADMM ρ 0.05 ×1.1 and coupled SLR
  ρ 0.1 (there they recover the optimal support on 0.90 and 0.78 of the instances against 0.81
  and 0.78 for the decoupled forms, seeds 0–2: the pull settles the support sooner); RGL
  proximal, λ 0.05, α refreshed every period; ``magnitude`` is None: no solve phase, the hard
  prune of the dense start.
* ``OVERHEAD`` — the step-time benchmark: ADMM and SLR decoupled (the default forms); RGL λ 1e-4
  in both forms, α refreshed every period; magnitude re-masked every period (``Remasking``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import optax

from prunax import solvers
from prunax.constraints import Spec

NEVER = 10**9  # a period no run reaches: the periodic work never comes due


@dataclass(frozen=True)
class SolvePhase:
    """What a transform is built for. ``every``: steps between the solver's periodic updates
    (ADMM's Z/U, SLR's multipliers, RGL's reweighting, gradual's mask updates); None: never due.
    ``steps``: the length of the solve phase. ``start`` and ``sparsity``: the dense start params
    and the target sparsity, from which RGL calibrates λ (``solvers.rgl_lambda``)."""

    spec: Spec
    lr: float
    every: int | None
    steps: int = 0
    start: Any = None
    sparsity: float | None = None

    @property
    def period(self) -> int:
        return NEVER if self.every is None else self.every

    @property
    def updates(self) -> int:
        """The periodic updates that fall inside the solve phase (at steps every, 2·every, ...)."""
        return max((self.steps - 1) // self.period, 1)

    @classmethod
    def of(
        cls, problem, spec: Spec, lr: float, solve_epochs: int, *, updates_per_epoch: int = 4, **calibration
    ):
        """The solve phase of ``problem`` over ``solve_epochs`` epochs of its recipe's batches,
        with ``updates_per_epoch`` periodic updates per epoch."""
        steps = problem.steps_per_epoch(problem.recipe.batch_size)
        return cls(spec, lr, max(steps // updates_per_epoch, 1), steps * solve_epochs, **calibration)


class Method(Protocol):
    """A registry entry: its hyperparameters, and the solve-phase transform they give."""

    def transform(self, phase: SolvePhase) -> optax.GradientTransformation: ...


@dataclass(frozen=True)
class Plain:
    """Adam alone: the reference step of the overhead benchmark."""

    def transform(self, phase: SolvePhase) -> optax.GradientTransformation:
        return optax.adam(phase.lr)


@dataclass(frozen=True)
class ADMM:
    """ADMM. Decoupled (``rho`` None): Adam's step pulled towards Z − U by the default pull, 0.03 → 1
    over the solve phase's Z-updates, the dual rescaled as it grows. ``rho`` given: the coupled
    first link with penalty ρ, multiplied by ``rho_growth`` at every Z-update."""

    rho: float | None = None
    rho_growth: float = 1.0

    def transform(self, phase: SolvePhase) -> optax.GradientTransformation:
        if self.rho is None:
            inner = optax.adam(phase.lr)
            return solvers.admm(phase.spec, every=phase.period, inner=inner, updates=phase.updates)
        admm = solvers.admm(phase.spec, rho=self.rho, every=phase.period, rho_growth=self.rho_growth)
        return optax.chain(admm, optax.adam(phase.lr))


@dataclass(frozen=True)
class SLR:
    """Surrogate Lagrangian relaxation with penalty ρ (the other constants: the reference's).
    Decoupled by default, with ADMM's pull; ``coupled``: the first link before Adam."""

    rho: float = 0.1
    coupled: bool = False

    def transform(self, phase: SolvePhase) -> optax.GradientTransformation:
        if self.coupled:
            slr = solvers.slr(phase.spec, rho=self.rho, every=phase.period)
            return optax.chain(slr, optax.adam(phase.lr))
        inner = optax.adam(phase.lr)
        return solvers.slr(phase.spec, rho=self.rho, every=phase.period, inner=inner, updates=phase.updates)


@dataclass(frozen=True)
class GroupLasso:
    """Reweighted group lasso over the constraints' groups. ``lam`` None: λ per leaf from
    ``solvers.rgl_lambda`` over the solve phase; ``prox``: the proximal form after Adam, else the
    subgradient before it; ``reweight``: α refreshed every period, else kept from the start."""

    lam: float | None = None
    prox: bool = True
    reweight: bool = False

    def transform(self, phase: SolvePhase) -> optax.GradientTransformation:
        lam = self.lam
        if lam is None:
            lam = solvers.rgl_lambda(phase.spec, phase.start, phase.sparsity, phase.steps, phase.lr)
        rgl = solvers.reweighted_group_lasso(
            phase.spec,
            lam=lam,
            reweight_every=phase.period if self.reweight else None,
            prox=self.prox,
            learning_rate=phase.lr if self.prox else None,
        )
        return optax.chain(optax.adam(phase.lr), rgl) if self.prox else optax.chain(rgl, optax.adam(phase.lr))


@dataclass(frozen=True)
class Magnitude:
    """One-shot magnitude pruning after Adam: pruned at the first step, then trained masked."""

    def schedule(self, phase: SolvePhase):
        """The fraction of the sparsity applied at each step (None: all of it from the first)."""
        return None

    def transform(self, phase: SolvePhase) -> optax.GradientTransformation:
        return optax.chain(optax.adam(phase.lr), solvers.magnitude(phase.spec, self.schedule(phase)))


@dataclass(frozen=True)
class Gradual(Magnitude):
    """Gradual magnitude pruning: Zhu & Gupta's cubic ramp over the first ``ramp`` of the solve
    phase, masks updated every period."""

    ramp: float = 0.75

    def schedule(self, phase: SolvePhase):
        return solvers.cubic_fraction(0, max(int(self.ramp * phase.steps), 1), every=phase.period)


@dataclass(frozen=True)
class Remasking(Magnitude):
    """Magnitude pruning whose fraction alternates 0.5 / 0.6 every period, so the masks are
    recomputed each period (the cost of a mask update); one-shot when the period never comes."""

    def schedule(self, phase: SolvePhase):
        if phase.every is None:
            return None
        every = phase.every
        return lambda count: 0.5 + 0.1 * ((count // every) % 2)


CONVERGENCE: dict[str, Method] = {
    "admm": ADMM(),
    "slr": SLR(),
    "rgl": GroupLasso(),
    "magnitude": Magnitude(),
    "gradual": Gradual(),
}
SUPPORT: dict[str, Method | None] = {
    "magnitude": None,
    "admm": ADMM(rho=0.05, rho_growth=1.1),
    "slr": SLR(rho=0.1, coupled=True),
    "rgl": GroupLasso(lam=0.05, reweight=True),
}
OVERHEAD: dict[str, Method] = {
    "admm": ADMM(),
    "slr": SLR(),
    "rgl": GroupLasso(lam=1e-4, prox=False, reweight=True),
    "rgl_prox": GroupLasso(lam=1e-4, reweight=True),
    "magnitude": Remasking(),
}


def lookup(registry: dict, name: str):
    """``registry[name]``, or a ValueError that lists the valid names."""
    if name not in registry:
        raise ValueError(f"unknown method {name!r}; valid: {tuple(registry)}")
    return registry[name]
