import os

import hypothesis
import pytest

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
