"""Every script of the shared corpus parses with `cfgscript -C --syntax-only`.

A few corpus files are not valid scripts for OpenSIPS or Kamailio either (broken braces, a
missing ')', stray text) or are unrendered templates; for those the test pins the diagnostic:
the file:line a user has to fix.
"""
import os
import subprocess
import sys

import pytest

from tests.conftest import CORPUS

# file -> (line of the diagnostic, text in it, why the file is not a valid script)
INVALID = {
    "AGProjects__openxcap__opensips__opensips.cfg":
        (130, "'else' outside a route block: the block was closed by the '}' at line 130",
         "two '}' too many: the route ends at line 130"),
    "DuoSoftware__DVP-Scripts__kamailio__kamailio.cfg":
        (1531, "'if' needs a condition in parentheses", "'else if' with no condition"),
    "Izib__opensips-mediaproxy__scripts__opensips_mediaproxy_ice__opensips.cfg.erb.cfg":
        (135, "template", "an ERB template (<%= %>) that was never rendered"),
    "altanai__opensipsexamples__rate_limiter_accounts__opensips_ratelimmiter.cfg":
        (61, "missing ')'", "modparam(\"uri\", \"use_uri_table\", 0 has no ')'"),
    "halef__opensips-setup__conf__opensips.cfg":
        (91, "'mysql' outside a route block", "a stray line 'mysql://...' between two modparams"),
    "sippy__voiptests__scenarios__UAS__auth_db__ha1__opensips.cfg.in.cfg":
        (42, "template", "a GPP template (<#mode pop>, #if) that was never rendered"),
}


def corpus_files():
    if not CORPUS.is_dir():
        return []
    files = []
    for sub in ("real", "official", "official/menuconfig"):
        d = CORPUS / sub
        if d.is_dir():
            files += sorted(p for p in d.iterdir()
                            if p.is_file() and p.suffix not in (".tsv", ".md"))
    return files


def check(path):
    cmd = [sys.executable, "-m", "runtime.cli", "-f", str(path), "-C", "--syntax-only"]
    if path.suffix == ".m4":
        cmd += ["-p", "m4"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_file_parses(path):
    res = check(path)
    if path.name in INVALID:
        line, text, why = INVALID[path.name]
        assert res.returncode != 0, f"{path.name} should be rejected: {why}"
        first = res.stderr.splitlines()[0]
        assert f"{path.name}:{line}:" in first, res.stderr
        assert text in res.stderr, res.stderr
    else:
        assert res.returncode == 0, res.stderr


def test_corpus_is_there(corpus_dir):
    assert len(corpus_files()) >= 60
    assert not set(INVALID) - {p.name for p in corpus_files()}
