"""Sans-IO SIP: parse received bytes lazily, record edits (lumps), build outgoing bytes.

No sockets in here. See DESIGN.md ("The path of one request") and each module:

* :mod:`.message` -- :class:`Message` (``Message.parse(bytes)``), :class:`Header`,
  :func:`stream_frame_length` for stream transports;
* :mod:`.headers` -- :class:`SIPError`, :class:`Via`, :class:`NameAddr`, header names;
* :mod:`.uri` -- :class:`URI` (sip, sips, tel);
* :mod:`.edits` -- :class:`Edits`, :func:`build_request`, :func:`build_reply`, :func:`apply`;
* :mod:`.reply` -- :func:`make_reply`, :func:`make_to_tag`, :func:`via_received_params`,
  :func:`reply_destination`.
"""
from .headers import COMPACT_FORMS, ENCODING, ERRORS, NameAddr, SIPError, Via, canonical_name
from .uri import URI, unescape
from .message import MAX_MESSAGE_SIZE, Header, Message, stream_frame_length
from .edits import Edits, apply, build_reply, build_request
from .reply import make_reply, make_to_tag, reply_destination, via_received_params

__all__ = [
    "SIPError", "Header", "Message", "URI", "Via", "NameAddr", "Edits",
    "build_request", "build_reply", "apply", "make_reply", "make_to_tag",
    "via_received_params", "reply_destination", "stream_frame_length", "unescape",
    "canonical_name", "COMPACT_FORMS", "ENCODING", "ERRORS", "MAX_MESSAGE_SIZE",
]
