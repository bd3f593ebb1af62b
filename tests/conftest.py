import os

import hypothesis
import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

# Shapes are fixed per test so JAX compiles once; examples then run in microseconds.
hypothesis.settings.register_profile("prunax", max_examples=40, deadline=None, print_blob=True)
hypothesis.settings.load_profile("prunax")


@pytest.fixture(autouse=True, scope="session")
def _own_model_cache(tmp_path_factory):
    """Dense models trained by the tests are cached in the session's temporary folder (one per
    pytest-xdist worker), never in the user's cache: tests see no stale model and two workers
    never write one cache entry at once. A test that sets PRUNAX_CACHE itself still wins."""
    previous = os.environ.get("PRUNAX_CACHE")
    os.environ["PRUNAX_CACHE"] = str(tmp_path_factory.getbasetemp() / "model-cache")
    yield
    if previous is None:
        del os.environ["PRUNAX_CACHE"]
    else:
        os.environ["PRUNAX_CACHE"] = previous


@pytest.fixture(autouse=True, scope="session")
def _own_compilation_cache(tmp_path_factory):
    """XLA executables are cached on disk in the session's temporary folder (one per pytest-xdist
    worker: the cache writes its files in place, so it is never shared between processes). Every
    ``prune`` and ``fit`` jits a fresh step function; a test that repeats a run (an uninterrupted,
    an interrupted and a resumed one) or a study that repeats a phase then compiles it once. The
    cached executable is the one XLA built, so results are bit-identical. Subprocesses that tests
    start do not inherit it."""
    previous = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.getbasetemp() / "xla-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    compilation_cache.reset_cache()
