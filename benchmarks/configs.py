"""The settings of every study and speed benchmark: one frozen dataclass each, validated when it
is built, importing nothing heavier than the standard library.

The command line builds each subcommand's flags from these fields (name, type, default and the
``help`` in the field's metadata) and checks the arguments by constructing the dataclass, all
before JAX is imported; the study modules take the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONVERGENCE_METHODS = ("admm", "slr", "rgl", "magnitude", "gradual")
HARD_STRUCTURES = ("polarity", "pattern", "2:4")  # the structures study's constraints on ResNet
DISTILLATION_METHODS = ("spd", "magnitude+kd", "magnitude")
SUPPORT_METHODS = ("magnitude", "admm", "slr", "rgl")
OVERHEAD_METHODS = ("admm", "slr", "rgl", "rgl_prox", "magnitude")
PROJECTION_METHODS = ("prunax project", "prunax mask", "floor", "NumPy", "lax.top_k", "sort", "read pass")
ONESHOT_METHODS = ("magnitude", "wanda", "sparsegpt", "admm")  # solvers.oneshot's layer methods
ONESHOT_STRUCTURES = ("50%", "60%", "70%", "2:4", "4:8", "16x16", "polarity", "structured")
ONESHOT_DEFAULTS = {  # problem -> (its structures, calibration examples: sentences or token windows)
    "bert": (("50%", "70%", "2:4", "4:8", "16x16", "polarity"), 128),
    "smollm2": (("50%", "2:4", "70%", "60%", "4:8", "structured"), 32),
}
ALLOCATION_STRUCTURES = {"resnet": "filter", "bert": "column"}  # structures whose pruned kernel is faster
# speedup study model -> (problem, default size, coupled structure, throughput batch, Adam lr)
SPEEDUP_MODELS = {
    "resnet8": ("resnet", "default", "channels", 64, 1e-3),
    "resnet18": ("resnet", "resnet18", "channels", 64, 1e-3),
    "yolo_tiny": ("yolo_tiny", "default", "filters", 32, 1e-3),
    "minilm": ("bert", "default", "head+neuron", 32, 1e-4),
}
SPEEDUP_METHODS = ("gradual", "admm")


class SettingError(ValueError):
    """A study setting out of range or unknown; ``setting`` names the field (the command line
    names its flag)."""

    def __init__(self, message: str, setting: str):
        super().__init__(message)
        self.setting = setting


def _help(text: str, **extra) -> dict:
    """Field metadata: ``help`` for the flag, and optionally ``flag`` (its name when it is not the
    field's) and ``item`` (what one comma-separated ``a:b`` item of a pair-list field holds)."""
    return {"help": text, **extra}


def _require(study: str, name: str, values, ok, rule: str) -> None:
    """A SettingError naming the study, the setting, the rule ("be >= 1", "lie in (0, 1)") and the
    value when ``ok`` fails for any (or there is no) value."""
    many = isinstance(values, tuple | list)
    checked = list(values) if many else [values]
    if not checked or not all(ok(v) for v in checked):
        shown = values[0] if many and len(values) == 1 else values
        raise SettingError(f"{study}: {name} must {rule}, got {shown}", name)


def _known(study: str, name: str, values, valid) -> None:
    unknown = [v for v in values if v not in valid]
    if unknown or not values:
        raise SettingError(
            f"{study}: unknown {name} {unknown or '(none given)'}; valid: {tuple(valid)}", name
        )


@dataclass(frozen=True)
class ConvergenceStudy:
    """Methods × sparsities × seeds through ``prune`` on one problem (the main job)."""

    problem: str = field(default="resnet", metadata=_help("see `prunax problems`"))
    size: str = field(default="default", metadata=_help("problem size (test: the smoke size)"))
    methods: tuple[str, ...] = field(
        default=("slr", "admm", "gradual"), metadata=_help(",".join(CONVERGENCE_METHODS))
    )
    sparsities: tuple[float, ...] = field(
        default=(0.9,), metadata=_help("e.g. 0.8,0.9,0.95", flag="sparsity")
    )
    seeds: tuple[int, ...] = field(default=(0,), metadata=_help("e.g. 0,1,2"))
    solve_epochs: int = field(default=2, metadata=_help("solver epochs before the hard prune"))
    retrain_epochs: int = field(default=1, metadata=_help("masked retraining epochs after the hard prune"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate (solve and retrain)"))
    structure: str = field(
        default="unstructured", metadata=_help("unstructured or a group of the problem (block16, ...)")
    )

    def __post_init__(self):
        _known("convergence", "methods", self.methods, CONVERGENCE_METHODS)
        _require("convergence", "sparsities", self.sparsities, lambda s: 0 < s < 1, "lie in (0, 1)")
        _require("convergence", "solve_epochs", self.solve_epochs, lambda v: v >= 1, "be >= 1")
        _require("convergence", "retrain_epochs", self.retrain_epochs, lambda v: v >= 0, "be >= 0")
        _require("convergence", "seeds", self.seeds, lambda v: v >= 0, "be non-empty and >= 0")
        _require("convergence", "lr", self.lr, lambda v: v > 0, "be > 0")

    def runs(self) -> list[tuple[str, float, int]]:
        return [(m, s, seed) for seed in self.seeds for s in self.sparsities for m in self.methods]


# MiniLM block pruning: RGL vs ADMM vs magnitude on 16×16 tiles at 2×…5× encoder compression.
BLOCKS_STUDY = ConvergenceStudy(
    problem="bert",
    methods=("rgl", "admm", "magnitude"),
    sparsities=(0.5, 0.667, 0.75, 0.8),
    solve_epochs=2,
    retrain_epochs=1,
    lr=1e-4,
    structure="block16",
)


@dataclass(frozen=True)
class DistillationStudy:
    """Sparse progressive distillation vs magnitude + KD vs magnitude on MiniLM."""

    size: str = field(default="default", metadata=_help("bert size (test: the tiny smoke model)"))
    settings: tuple[tuple[str, float], ...] = field(
        default=(("unstructured", 0.9), ("block16", 0.5)),
        metadata=_help(
            "structure:sparsity items, e.g. unstructured:0.9,neuron:0.5", item="structure:sparsity"
        ),
    )
    methods: tuple[str, ...] = field(
        default=DISTILLATION_METHODS, metadata=_help(",".join(DISTILLATION_METHODS))
    )
    prune_epochs: int = field(
        default=2,
        metadata=_help("pruning-stage epochs (cubic sparsity schedule, layers mixed from the teacher)"),
    )
    replace_epochs: int = field(default=1, metadata=_help("epochs while the replacing rate goes to 1"))
    finetune_epochs: int = field(default=1, metadata=_help("fine-tuning epochs of the pruned student alone"))
    lr: float = field(default=1e-4, metadata=_help("peak AdamW learning rate (restarted per stage)"))
    p0: float = field(default=0.8, metadata=_help("layer replacing rate at the start"))
    temperature: float = field(default=1.0, metadata=_help("distillation temperature"))
    updates: int = field(default=12, metadata=_help("mask updates in the pruning stage"))
    seed: int = field(default=0, metadata=_help("seed of the dense teacher, batches and layer draws"))

    def __post_init__(self):
        _known("spd", "methods", self.methods, DISTILLATION_METHODS)
        _require(
            "spd",
            "settings",
            [s for _, s in self.settings],
            lambda s: 0 < s < 1,
            "be non-empty, sparsities in (0, 1)",
        )
        _require("spd", "prune_epochs", self.prune_epochs, lambda v: v >= 1, "be >= 1")
        _require("spd", "replace_epochs", self.replace_epochs, lambda v: v >= 1, "be >= 1")
        _require("spd", "finetune_epochs", self.finetune_epochs, lambda v: v >= 0, "be >= 0")
        _require("spd", "p0", self.p0, lambda v: 0 < v <= 1, "lie in (0, 1]")
        _require("spd", "updates", self.updates, lambda v: v >= 1, "be >= 1")
        _require("spd", "lr", self.lr, lambda v: v > 0, "be > 0")
        _require("spd", "temperature", self.temperature, lambda v: v > 0, "be > 0")
        _require("spd", "seed", self.seed, lambda v: v >= 0, "be >= 0")


@dataclass(frozen=True)
class StructuresStudy:
    """Every method at equal epochs on structures that magnitude ranks poorly: FORMS polarity,
    PatDNN patterns with connectivity and 2:4, on ResNet/MNIST."""

    size: str = field(default="default", metadata=_help("resnet size (test: the smoke size)"))
    structures: tuple[str, ...] = field(default=HARD_STRUCTURES, metadata=_help(",".join(HARD_STRUCTURES)))
    methods: tuple[str, ...] = field(
        default=CONVERGENCE_METHODS, metadata=_help(",".join(CONVERGENCE_METHODS))
    )
    sparsity: float = field(default=0.8, metadata=_help("sparsity of polarity and pattern (2:4 is 0.5)"))
    fragment: int = field(default=8, metadata=_help("polarity fragment: rows sharing one sign per column"))
    seeds: tuple[int, ...] = field(default=(0,), metadata=_help("e.g. 0,1,2"))
    solve_epochs: int = field(default=2, metadata=_help("solver epochs before the hard prune"))
    retrain_epochs: int = field(default=2, metadata=_help("masked retraining epochs after the hard prune"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate (solve and retrain)"))

    def __post_init__(self):
        _known("structures", "structures", self.structures, HARD_STRUCTURES)
        _known("structures", "methods", self.methods, CONVERGENCE_METHODS)
        _require("structures", "sparsity", self.sparsity, lambda v: 5 / 9 < v < 1, "lie in (5/9, 1)")
        _require("structures", "fragment", self.fragment, lambda v: v >= 1, "be >= 1")
        _require("structures", "seeds", self.seeds, lambda v: v >= 0, "be non-empty and >= 0")
        _require("structures", "solve_epochs", self.solve_epochs, lambda v: v >= 1, "be >= 1")
        _require("structures", "retrain_epochs", self.retrain_epochs, lambda v: v >= 0, "be >= 0")
        _require("structures", "lr", self.lr, lambda v: v > 0, "be > 0")

    def runs(self) -> list[tuple[str, str, int]]:
        """(structure, method, seed) triples, structures outermost."""
        return [(s, m, seed) for s in self.structures for seed in self.seeds for m in self.methods]


@dataclass(frozen=True)
class FormsStudy:
    """ADMM into FORMS polarized crossbar fragments on ResNet/MNIST, priced by the crossbar model."""

    size: str = field(default="default", metadata=_help("resnet size (test: the smoke size)"))
    structures: tuple[str, ...] = field(
        default=("unstructured", "column"), metadata=_help("unstructured and/or resnet groups")
    )
    sparsity: float = field(default=0.8, metadata=_help("sparsity of every structure"))
    fragments: tuple[int, ...] = field(
        default=(4, 8, 16), metadata=_help("fragment sizes (a run without polarity is added)")
    )
    solve_epochs: int = field(default=2, metadata=_help("solver epochs before the hard prune"))
    retrain_epochs: int = field(default=2, metadata=_help("masked retraining epochs after the hard prune"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate (solve and retrain)"))
    seed: int = field(default=0, metadata=_help("seed of the dense start, batches and draws"))
    windows: int = field(default=256, metadata=_help("im2col windows sampled per layer for zero-skipping"))

    def __post_init__(self):
        _require("forms", "structures", self.structures, lambda v: bool(v), "be non-empty")
        _require("forms", "sparsity", self.sparsity, lambda v: 0 < v < 1, "lie in (0, 1)")
        _require("forms", "fragments", self.fragments, lambda v: v >= 1, "be non-empty and >= 1")
        _require("forms", "solve_epochs", self.solve_epochs, lambda v: v >= 1, "be >= 1")
        _require("forms", "retrain_epochs", self.retrain_epochs, lambda v: v >= 0, "be >= 0")
        _require("forms", "lr", self.lr, lambda v: v > 0, "be > 0")
        _require("forms", "seed", self.seed, lambda v: v >= 0, "be >= 0")
        _require("forms", "windows", self.windows, lambda v: v >= 1, "be >= 1")

    def runs(self) -> list[tuple[str, int | None]]:
        """(structure, fragment) pairs; fragment None is the run without a polarity constraint."""
        return [(s, f) for s in self.structures for f in (None, *self.fragments)]


@dataclass(frozen=True)
class AllocationStudy:
    """Per-layer sparsities from measured latency vs uniform sparsity, within the same latency."""

    problem: str = field(default="resnet", metadata=_help("resnet (filters) or bert (output columns)"))
    size: str = field(default="default", metadata=_help("problem size (test: the smoke size)"))
    sparsity: float = field(default=0.5, metadata=_help("uniform reference; its latency is the budget"))
    solve_epochs: int = field(default=2, metadata=_help("solver epochs before the hard prune"))
    retrain_epochs: int = field(default=2, metadata=_help("masked retraining epochs after the hard prune"))
    lr: float | None = field(
        default=None, metadata=_help("Adam learning rate (default: resnet 1e-3, bert 1e-4)")
    )
    seed: int = field(default=0, metadata=_help("seed of the dense start, batches and draws"))
    repeats: int = field(default=10, metadata=_help("timed calls per layer and sparsity"))

    def __post_init__(self):
        if self.problem not in ALLOCATION_STRUCTURES:
            raise SettingError(
                f"allocation: studies exist for {sorted(ALLOCATION_STRUCTURES)}, "
                f"got problem {self.problem!r}",
                "problem",
            )
        if self.lr is None:  # Adam 1e-3 wrecks the pretrained MiniLM
            object.__setattr__(self, "lr", {"resnet": 1e-3, "bert": 1e-4}[self.problem])
        _require("allocation", "sparsity", self.sparsity, lambda v: 0 < v < 1, "lie in (0, 1)")
        _require("allocation", "solve_epochs", self.solve_epochs, lambda v: v >= 1, "be >= 1")
        _require("allocation", "retrain_epochs", self.retrain_epochs, lambda v: v >= 0, "be >= 0")
        _require("allocation", "lr", self.lr, lambda v: v > 0, "be > 0")
        _require("allocation", "seed", self.seed, lambda v: v >= 0, "be >= 0")
        _require("allocation", "repeats", self.repeats, lambda v: v >= 1, "be >= 1")


@dataclass(frozen=True)
class SpeedupStudy:
    """Coupled structured pruning, compaction into smaller dense models, and their measured speed."""

    models: tuple[str, ...] = field(default=tuple(SPEEDUP_MODELS), metadata=_help(",".join(SPEEDUP_MODELS)))
    size: str | None = field(default=None, metadata=_help("one size for every model (test: smoke sizes)"))
    sparsities: tuple[float, ...] = field(default=(0.25, 0.5, 0.75), metadata=_help("e.g. 0.25,0.5,0.75"))
    methods: tuple[str, ...] = field(default=SPEEDUP_METHODS, metadata=_help(",".join(SPEEDUP_METHODS)))
    solve_epochs: int = field(default=2, metadata=_help("solver epochs before the hard prune"))
    retrain_epochs: int = field(default=2, metadata=_help("masked retraining epochs after the hard prune"))
    seeds: tuple[int, ...] = field(
        default=(0,), metadata=_help("seeds of the dense start and batches, e.g. 0,1,2")
    )
    repeats: int = field(default=30, metadata=_help("interleaved timed rounds per latency"))

    def __post_init__(self):
        _known("speedup", "models", self.models, SPEEDUP_MODELS)
        _known("speedup", "methods", self.methods, SPEEDUP_METHODS)
        _require("speedup", "sparsities", self.sparsities, lambda s: 0 < s < 1, "lie in (0, 1)")
        _require("speedup", "solve_epochs", self.solve_epochs, lambda v: v >= 1, "be >= 1")
        _require("speedup", "retrain_epochs", self.retrain_epochs, lambda v: v >= 0, "be >= 0")
        _require("speedup", "seeds", self.seeds, lambda v: v >= 0, "be non-empty and >= 0")
        _require("speedup", "repeats", self.repeats, lambda v: v >= 1, "be >= 1")

    def model(self, name: str) -> tuple[str, str, str, int, float]:
        """(problem, size, structure, throughput batch, lr) of ``name`` at this study's size."""
        problem, size, structure, batch, lr = SPEEDUP_MODELS[name]
        return problem, self.size or size, structure, batch, lr


@dataclass(frozen=True)
class RT3Study:
    """RT3 on MiniLM: block pruning, pattern sets per frequency level by REINFORCE, switching."""

    size: str = field(default="default", metadata=_help("bert size (test: the tiny BERT)"))
    tile: int = field(default=16, metadata=_help("block and pattern tile side b"))
    block_sparsity: float = field(default=0.5, metadata=_help("fraction of tiles removed by block pruning"))
    solve_epochs: int = field(default=2, metadata=_help("solver epochs before the hard prune"))
    retrain_epochs: int = field(default=1, metadata=_help("masked retraining epochs after the hard prune"))
    shared_epochs: int = field(
        default=2, metadata=_help("level-aware training (a candidate's masks per step)")
    )
    lr: float = field(default=1e-4, metadata=_help("Adam learning rate (block pruning and shared)"))
    densities: tuple[float, ...] = field(
        default=(0.75, 0.5, 0.375, 0.25), metadata=_help("kept fractions of a surviving tile")
    )
    set_sizes: tuple[int, ...] = field(default=(4, 32), metadata=_help("patterns per kernel"))
    frequencies: tuple[float, ...] = field(
        default=(1.0, 0.8, 0.6, 0.4), metadata=_help("levels, relative to the top")
    )
    steps: int = field(default=200, metadata=_help("REINFORCE steps (batches of 8 per level)"))
    penalty: float = field(default=10.0, metadata=_help("reward lost per unit of budget overshoot"))
    seed: int = field(default=0, metadata=_help("seed of the dense start, batches and draws"))

    def __post_init__(self):
        _require("rt3", "tile", self.tile, lambda v: v >= 1, "be >= 1")
        _require("rt3", "block_sparsity", self.block_sparsity, lambda v: 0 <= v < 1, "lie in [0, 1)")
        _require("rt3", "densities", self.densities, lambda v: 0 < v <= 1, "be non-empty and in (0, 1]")
        _require("rt3", "set_sizes", self.set_sizes, lambda v: v >= 1, "be non-empty and >= 1")
        _require(
            "rt3",
            "frequencies",
            self.frequencies,
            lambda v: 0 < v <= 1,
            "be non-empty and in (0, 1] (relative to the top level)",
        )
        _require("rt3", "solve_epochs", self.solve_epochs, lambda v: v >= 1, "be >= 1")
        _require("rt3", "retrain_epochs", self.retrain_epochs, lambda v: v >= 0, "be >= 0")
        _require("rt3", "shared_epochs", self.shared_epochs, lambda v: v >= 0, "be >= 0")
        _require("rt3", "lr", self.lr, lambda v: v > 0, "be > 0")
        _require("rt3", "steps", self.steps, lambda v: v >= 1, "be >= 1")
        _require("rt3", "penalty", self.penalty, lambda v: v >= 0, "be >= 0")
        _require("rt3", "seed", self.seed, lambda v: v >= 0, "be >= 0")

    @property
    def candidates(self) -> list[tuple[float, int] | None]:
        """None (the block-pruned weights), then every (tile density, set size)."""
        return [None] + [(d, k) for d in self.densities for k in self.set_sizes]


@dataclass(frozen=True)
class BiasStudy:
    """The attention-map gender-bias detector on dense and magnitude-pruned MiniLM."""

    sparsities: tuple[float, ...] = field(
        default=(0.5, 0.8), metadata=_help("magnitude sparsities", flag="sparsity")
    )
    epochs: int = field(default=1, metadata=_help("embedding-preserving retraining epochs (0: none)"))

    def __post_init__(self):
        _require("bias", "sparsities", self.sparsities, lambda s: 0 < s < 1, "be non-empty and in (0, 1)")
        _require("bias", "epochs", self.epochs, lambda v: v >= 0, "be >= 0")


@dataclass(frozen=True)
class OneShotStudy:
    """Post-training layer-wise pruning without retraining (fine-tuned MiniLM, or SmolLM2-135M):
    every one-shot method on unstructured, N:M, tile, polarity and head/neuron constraints of the
    model's linear kernels."""

    problem: str = field(default="bert", metadata=_help(",".join(ONESHOT_DEFAULTS)))
    size: str = field(default="default", metadata=_help("problem size (test: the smoke size)"))
    structures: tuple[str, ...] | None = field(
        default=None,
        metadata=_help(
            ",".join(ONESHOT_STRUCTURES)
            + "; default: "
            + "; ".join(f"{p}: {','.join(d[0])}" for p, d in ONESHOT_DEFAULTS.items())
        ),
    )
    methods: tuple[str, ...] = field(default=ONESHOT_METHODS, metadata=_help(",".join(ONESHOT_METHODS)))
    calibration: int | None = field(
        default=None,
        metadata=_help(
            "calibration examples from the training split: sentences (bert, default 128) or "
            "token windows (smollm2, default 32)"
        ),
    )
    seeds: tuple[int, ...] = field(default=(0,), metadata=_help("calibration draws, e.g. 0,1,2"))
    fragment: int = field(default=8, metadata=_help("polarity fragment: rows sharing one sign per column"))
    repeats: int = field(
        default=30,
        metadata=_help("interleaved timed rounds of the dense and compacted forwards (structured)"),
    )

    def __post_init__(self):
        _known("oneshot", "problem", (self.problem,), ONESHOT_DEFAULTS)
        if self.structures is not None:
            _known("oneshot", "structures", self.structures, ONESHOT_STRUCTURES)
        _known("oneshot", "methods", self.methods, ONESHOT_METHODS)
        if self.calibration is not None:
            _require("oneshot", "calibration", self.calibration, lambda v: v >= 1, "be >= 1")
        _require("oneshot", "seeds", self.seeds, lambda v: v >= 0, "be non-empty and >= 0")
        _require("oneshot", "fragment", self.fragment, lambda v: v >= 1, "be >= 1")
        _require("oneshot", "repeats", self.repeats, lambda v: v >= 1, "be >= 1")

    @property
    def chosen_structures(self) -> tuple[str, ...]:
        return ONESHOT_DEFAULTS[self.problem][0] if self.structures is None else self.structures

    @property
    def examples(self) -> int:
        """Calibration examples per draw."""
        return ONESHOT_DEFAULTS[self.problem][1] if self.calibration is None else self.calibration

    def runs(self) -> list[tuple[str, str, int]]:
        """(structure, method, seed) triples, structures outermost."""
        return [(s, m, seed) for s in self.chosen_structures for seed in self.seeds for m in self.methods]


@dataclass(frozen=True)
class SupportStudy:
    """How often each solver finds the brute-force optimal support of k-sparse least squares."""

    seeds: int = field(default=5, metadata=_help("number of seeds (0, 1, ...)"))
    instances: int = field(default=100, metadata=_help("instances per seed"))

    def __post_init__(self):
        _require("support", "seeds", self.seeds, lambda v: v >= 1, "be >= 1")
        _require("support", "instances", self.instances, lambda v: v >= 1, "be >= 1")


@dataclass(frozen=True)
class ProjectionBench:
    """The projection against its floor, NumPy, lax.top_k and sorting; sharded; every family."""

    sizes: tuple[float, ...] = field(default=(1e5, 1e6, 1e7), metadata=_help("e.g. 1e5,1e6,1e7,3e7"))
    fractions: tuple[float, ...] = field(default=(0.5, 0.1, 0.01), metadata=_help("kept fractions k/n"))
    methods: tuple[str, ...] = field(default=PROJECTION_METHODS, metadata=_help("comma-separated subset"))
    repeats: int = field(default=7, metadata=_help("timed calls per measurement (median)"))
    no_families: bool = field(default=False, metadata=_help("leave out the family table"))
    no_sharded: bool = field(default=False, metadata=_help("leave out the 8-host-device table"))

    def __post_init__(self):
        _require(
            "projection",
            "sizes",
            self.sizes,
            lambda v: v >= 1 and float(v).is_integer(),
            "be whole numbers >= 1",
        )
        _require(
            "projection", "fractions", self.fractions, lambda v: 0 < v <= 1, "be non-empty and in (0, 1]"
        )
        _known("projection", "methods", self.methods, PROJECTION_METHODS)
        _require("projection", "repeats", self.repeats, lambda v: v >= 1, "be >= 1")


@dataclass(frozen=True)
class OverheadBench:
    """Solver step time against the plain optax step on one problem and batch."""

    problem: str = field(default="resnet", metadata=_help("see `prunax problems`"))
    size: str = field(default="default", metadata=_help("problem size (test: the smoke size)"))
    batch_size: int = field(default=64, metadata=_help("batch of the timed steps"))
    repeats: int = field(default=20, metadata=_help("timed calls per measurement (median)"))
    methods: tuple[str, ...] = field(default=OVERHEAD_METHODS, metadata=_help("comma-separated subset"))

    def __post_init__(self):
        _known("overhead", "methods", self.methods, OVERHEAD_METHODS)
        _require("overhead", "batch_size", self.batch_size, lambda v: v >= 1, "be >= 1")
        _require("overhead", "repeats", self.repeats, lambda v: v >= 1, "be >= 1")
