"""RTPProxy nodes: an `rtpproxy_sock` url may name the address to put in the SDP
(`url|advertised`); sets, selection and the exchange are runtime/nodesets.py's."""
from __future__ import annotations

from runtime import nodesets


class Node(nodesets.Node):
    def __init__(self, url: str, weight: int, set_id: int):
        adv = None
        if "|" in url:
            url, _, adv = url.rpartition("|")
            url, adv = url.strip(), adv.strip() or None
        super().__init__(url, weight, set_id)
        self.adv_address = adv          # "url|address": the address to put in the SDP
        self.caps = set()               # optional capabilities the node said it has


def parse_sets(values, default_set=nodesets.DEFAULT_SET) -> dict[int, list[Node]]:
    """`rtpproxy_sock` values ("[id ==] url[|advertised][=weight] url...") -> {set id: [Node]}."""
    return nodesets.parse_sets(values, default_set, Node)
