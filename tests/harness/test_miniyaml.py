"""The YAML subset reader, on the shapes SIPssert scenario files use."""
import pytest

from runtime.testing.miniyaml import YamlError, loads

SIPSSERT_CALL = """\
---
timeout: 40   # seconds

tasks:
  - name: OpenSIPS
    type: opensips

  - name: SIPP UAS
    type: uas-sipp
    username: testing
    config_file: scripts/uas.xml
    require: OpenSIPS

  - name: SIPP UAC
    type: uac-sipp
    config_file: "scripts/uac.xml"
    remote: 127.0.0.2:5080
    password: 'T3st|n6 # not a comment'
    duration: 10000
    keys:
      domain: example.com
      ratio: 0.5
    require:
      - started:
          task: SIPP UAS
          wait: 0.5
      - after:
          task: OpenSIPS
          wait: 0.5
"""


def test_a_sipssert_scenario():
    assert loads(SIPSSERT_CALL) == {
        "timeout": 40,
        "tasks": [
            {"name": "OpenSIPS", "type": "opensips"},
            {"name": "SIPP UAS", "type": "uas-sipp", "username": "testing",
             "config_file": "scripts/uas.xml", "require": "OpenSIPS"},
            {"name": "SIPP UAC", "type": "uac-sipp", "config_file": "scripts/uac.xml",
             "remote": "127.0.0.2:5080", "password": "T3st|n6 # not a comment",
             "duration": 10000, "keys": {"domain": "example.com", "ratio": 0.5},
             "require": [{"started": {"task": "SIPP UAS", "wait": 0.5}},
                         {"after": {"task": "OpenSIPS", "wait": 0.5}}]},
        ],
    }


@pytest.mark.parametrize("text, value", [
    ("a:\n- x\n- y\n", {"a": ["x", "y"]}),                  # list at its key's indentation
    ("a: [1, 'b, c', true]\n", {"a": [1, "b, c", True]}),
    ("a: {k: v, n: ~}\n", {"a": {"k": "v", "n": None}}),
    ("a:\nb: null\n", {"a": None, "b": None}),
    ("a: yes\nb: Off\nc: yES\n", {"a": True, "b": False, "c": "yES"}),
    ('a: "x\\ty"\n', {"a": "x\ty"}),
    ("a: 'it''s'\n", {"a": "it's"}),
    ("a: -3\nb: 1e3\nc: 1.5e3\nd: 5080/TCP\n", {"a": -3, "b": "1e3", "c": 1500.0,
                                                "d": "5080/TCP"}),
    ("- - a\n  - b\n- c\n", [["a", "b"], "c"]),
    ("sockets:\n  - udp:127.0.0.1:5060\n", {"sockets": ["udp:127.0.0.1:5060"]}),
    ("# only a comment\n", None),
])
def test_scalars_and_collections(text, value):
    assert loads(text) == value


@pytest.mark.parametrize("text, message", [
    ("a: &x 1\n", "2: unsupported YAML"),
    ("a: |\n  text\n", "2: unsupported YAML"),
    ("a: 1\n---\nb: 2\n", "3: only one document"),
    ("a: 1\n   b: 2\n", "3: unexpected indentation"),
    ("a: 1\na: 2\n", "3: duplicate key"),
    ("a:\n\tb: 1\n", "3: tabs"),
    ("just text\n", "2: expected 'key: value'"),
    ("a: [1, [2]]\n", "2: nested flow"),
    ('a: "open\n', "2: unterminated"),
])
def test_what_it_refuses(text, message):
    with pytest.raises(YamlError, match=message.split(": ", 1)[1]) as e:
        loads("---\n" + text, "s.yml")
    assert str(e.value).startswith("s.yml:" + message.split(":")[0] + ":")
