"""Shared test settings: where the script corpus lives."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = pathlib.Path(os.environ.get("CFGSCRIPT_CORPUS", ROOT.parent / "shared" / "corpus"))


@pytest.fixture
def corpus_dir():
    if not CORPUS.is_dir():
        pytest.skip(f"script corpus not found at {CORPUS} (set CFGSCRIPT_CORPUS)")
    return CORPUS
