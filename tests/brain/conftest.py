"""Brain test fixtures: Agg backend, the shared data folder, small corpora and planted stores."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("BREACHLAB_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _data_env(monkeypatch):
    """Tests may chdir; point the loaders at the shared data explicitly."""
    if DATA.is_dir():
        monkeypatch.setenv("BREACHLAB_DATA", str(DATA))


@pytest.fixture(scope="session")
def need_data():
    if not (DATA / "atlases" / "fsaverage5_parcellations.npz").is_file():
        pytest.skip("shared data (../shared/data) not available")
    os.environ.setdefault("BREACHLAB_DATA", str(DATA))
    return DATA


@pytest.fixture(scope="module")
def render_run(tmp_path_factory):  # shared by the encoder tests
    """A real render run of 4 seed messages (phishing + legitimate, EN + JA)."""
    from breachlab.brain.configs import RenderConfig
    from breachlab.brain.corpus import dump_corpus, filter_corpus, seed_corpus
    from breachlab.brain.stages import run_render

    root = tmp_path_factory.mktemp("render")
    c = filter_corpus(seed_corpus(), types=["legitimate", "phishing"], max_variant=0)
    dump_corpus(c, root / "corpus.yaml")
    return run_render(root / "corpus.yaml", RenderConfig(), out=root / "run")


FAKE_TRIBE = Path(__file__).parent / "fake_tribev2"


@pytest.fixture
def fake_tribe(monkeypatch):
    """Put the TRIBE v2 test double first on sys.path; forget its modules afterwards."""
    import sys

    monkeypatch.syspath_prepend(str(FAKE_TRIBE))
    yield FAKE_TRIBE
    for name in list(sys.modules):
        if name.split(".")[0] in ("tribev2", "neuralset"):
            del sys.modules[name]
