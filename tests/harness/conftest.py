"""The harness tests run real SIPp and the real proxy on 127.x.y.z; no mocks."""
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
STATELESS = ROOT / "samples" / "stateless"


@pytest.fixture
def make_scenario(tmp_path):
    """make_scenario(name, {relative path: text or Path to copy}) -> the folder."""
    def make(name, files):
        folder = tmp_path / name
        for rel, content in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy(content, path)
            else:
                path.write_text(content)
        return folder
    return make
