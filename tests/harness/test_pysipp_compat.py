"""pysipp 0.1.0 with pluggy >= 1: it imports, its fixes hold, and it runs SIPp."""
import shutil
from importlib.metadata import version

import pytest

from runtime.testing import addresses, pysipp_compat

from .conftest import DATA

pytestmark = pytest.mark.skipif(not shutil.which("sipp"), reason="needs SIPp (sip-tester)")


@pytest.fixture(scope="module")
def pysipp():
    return pysipp_compat.load()


def test_it_imports_next_to_pytests_pluggy(pysipp):
    assert int(version("pluggy").split(".")[0]) >= 1
    assert version("pysipp") == "0.1.0"
    assert pysipp_compat.load() is pysipp


def test_a_pysipp_conf_py_hook_without_marker_is_still_a_hook(pysipp, tmp_path):
    """implprefix: pysipp 0.1.0 finds conf-file hooks by their `pysipp_` prefix (via imp)."""
    shutil.copy(DATA / "pair" / "uac.xml", tmp_path)
    shutil.copy(DATA / "pair" / "uas.xml", tmp_path)
    (tmp_path / "pysipp_conf.py").write_text(
        "def pysipp_conf_scen(agents, scen):\n"
        "    scen.clientdefaults.uri_username = 'from-conf'\n")
    scen = pysipp.scenario(dirpath=str(tmp_path), defaults={"logdir": str(tmp_path)})
    assert "-s 'from-conf'" in dict(scen.cmditems())["uac"]


def test_logdir_can_be_set_on_an_agent(pysipp, tmp_path):
    assert pysipp.server(logdir=str(tmp_path)).logdir == str(tmp_path)


def test_random_sockets_are_on_loopback(pysipp, tmp_path):
    scen = pysipp.scenario(defaults={"logdir": str(tmp_path)})
    assert all(" -i '127.0.0.1' " in cmd for _, cmd in scen.cmditems())
    ip = addresses.allocate().uac_ip
    scen = pysipp.scenario(defaults={"logdir": str(tmp_path), "local_host": ip})
    assert all(f" -i '{ip}' " in cmd for _, cmd in scen.cmditems())


def test_it_launches_a_uac_uas_pair(pysipp, tmp_path):
    roles = addresses.allocate()
    uas = pysipp.server(srcaddr=(roles.uas_ip, 5080), scen_file=str(DATA / "pair" / "uas.xml"),
                        logdir=str(tmp_path))
    uac = pysipp.client(srcaddr=(roles.uac_ip, 5070), destaddr=(roles.uas_ip, 5080),
                        scen_file=str(DATA / "pair" / "uac.xml"), logdir=str(tmp_path))
    finalize = uas(block=False)
    uac(timeout=15)                      # raises pysipp.SIPpFailure unless it exits 0
    procs = finalize(timeout=15)
    assert [p.returncode for p in procs.values()] == [0]
