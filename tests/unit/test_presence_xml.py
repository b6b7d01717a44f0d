"""presence_xml's documents: PIDF aggregation and offline bodies, pres-rules (RFC 4745/5025)
decisions; xcap's table access."""
import datetime

from modules.presence_xml import pidf

A = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          entity="sip:alice@example.com">
  <tuple id="phone"><status><basic>open</basic></status><note>on the phone</note></tuple>
  <dm:person id="p1"><dm:note>busy</dm:note></dm:person>
</presence>"""
B = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
          entity="sip:alice@other">
  <tuple id="laptop"><status><basic>closed</basic></status></tuple>
  <tuple id="phone"><status><basic>closed</basic></status></tuple>
</presence>"""


def test_aggregate():
    assert pidf.aggregate("sip:alice@example.com", []) is None
    assert pidf.aggregate("sip:alice@example.com", [A]) == A       # one state: as published
    out = pidf.aggregate("sip:alice@example.com", [A, B])
    doc = pidf.parse(out)
    root = doc.documentElement
    assert root.getAttribute("entity") == "sip:alice@example.com"
    assert root.getAttribute("xmlns") == "urn:ietf:params:xml:ns:pidf"
    assert root.getAttribute("xmlns:dm") and root.getAttribute("xmlns:rpid")
    tuples = root.getElementsByTagName("tuple")
    # newest (B) first, one tuple per id: B's "phone" wins over A's
    assert [t.getAttribute("id") for t in tuples] == ["laptop", "phone"]
    assert "closed" in tuples[1].toxml()
    assert len(root.getElementsByTagName("dm:person")) == 1
    # a broken document is left out
    assert pidf.aggregate("sip:a@b", [A, "<oops"]) .count("<tuple") == 1


def test_offline_and_closed():
    out = pidf.offline(A)
    assert "<basic>closed</basic>" in out and 'id="phone"' in out
    assert "on the phone" not in out and "person" not in out
    assert pidf.offline("<presence xmlns='urn:ietf:params:xml:ns:pidf'/>") is None
    assert pidf.offline("not xml") is None
    c = pidf.closed("sip:a@b")
    assert pidf.well_formed(c) and 'entity="sip:a@b"' in c and "closed" in c


RULES = """<?xml version="1.0" encoding="UTF-8"?>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
         xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
  <rule id="friends">
    <conditions><identity><one id="sip:bob@example.com"/>
      <many domain="friends.example"><except id="sip:eve@friends.example"/></many>
    </identity></conditions>
    <actions><pr:sub-handling>allow</pr:sub-handling></actions>
  </rule>
  <rule id="blocked">
    <conditions><identity><one id="sip:eve@friends.example"/></identity></conditions>
    <actions><pr:sub-handling>block</pr:sub-handling></actions>
  </rule>
  <rule id="during-2020">
    <conditions><identity><one id="sip:temp@example.com"/></identity>
      <validity><from>2020-01-01T00:00:00Z</from><until>2020-12-31T23:59:59Z</until></validity>
    </conditions>
    <actions><pr:sub-handling>allow</pr:sub-handling></actions>
  </rule>
  <rule id="everyone-else-asks">
    <conditions/>
    <actions><pr:sub-handling>confirm</pr:sub-handling></actions>
  </rule>
  <rule id="unknown-condition">
    <conditions><future-thing/></conditions>
    <actions><pr:sub-handling>allow</pr:sub-handling></actions>
  </rule>
</ruleset>"""


def test_sub_handling():
    assert pidf.sub_handling(RULES, "sip:bob@example.com") == "allow"
    assert pidf.sub_handling(RULES, "sips:bob@EXAMPLE.com;transport=tls") == "allow"
    assert pidf.sub_handling(RULES, "sip:joe@friends.example") == "allow"
    # excepted from "friends", blocked by its own rule, but "everyone" says confirm: the
    # most permissive action of the rules that apply
    assert pidf.sub_handling(RULES, "sip:eve@friends.example") == "confirm"
    assert pidf.sub_handling(RULES, "sip:carol@example.com") == "confirm"
    in_2020 = datetime.datetime(2020, 6, 1, tzinfo=datetime.timezone.utc)
    assert pidf.sub_handling(RULES, "sip:temp@example.com", in_2020) == "allow"
    only_block = RULES.replace("<conditions/>",
                               '<conditions><identity><one id="sip:nobody@x"/></identity>'
                               '</conditions>')
    assert pidf.sub_handling(only_block, "sip:eve@friends.example") == "block"
    assert pidf.sub_handling("<not xml", "sip:bob@example.com") is None
    assert pidf.sub_handling("<ruleset/>", "sip:bob@example.com") is None


def test_xcap_table(tmp_path):
    from modules import xcap
    from runtime import db
    conn = xcap.open_table(f"sqlite://{tmp_path / 'x.db'}", "xcap")
    conn.insert("xcap", {"username": "alice", "domain": "example.com", "doc": RULES.encode(),
                         "doc_type": xcap.PRES_RULES, "etag": "e1", "source": 1,
                         "doc_uri": "/pres-rules/users/sip:alice@example.com/index",
                         "port": 0})
    doc, etag = xcap.get_doc(conn, "xcap", "alice", "example.com", xcap.PRES_RULES)
    assert doc == RULES and etag == "e1"
    assert xcap.get_doc(conn, "xcap", "alice", "example.com", xcap.RESOURCE_LISTS) == \
        (None, None)
    assert xcap.get_doc(conn, "xcap", "alice", "example.com", xcap.PRES_RULES,
                        match_etag="e2") == (None, None)
    assert xcap.normalize_sip_uri("alice@example.com;x=1") == "sip:alice@example.com"
    assert conn.table_version("xcap") == 4
    db.close_all()
