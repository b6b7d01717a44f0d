"""Embedded MediaProxy-compatible dispatcher and asyncio media relay.

* ``protocol``   line framing and header decoding shared by both ends
* ``media``      the relay: sessions, streams, port pairs, UDP forwarding, timers
* ``dispatcher`` the dispatcher: OpenSIPS socket, relay links, management
* ``link``       a relay's connection to a dispatcher (for ``cfgscript-relay``)
* ``cli``        ``cfgscript-relay``;  ``__main__``: ``python -m modules.mediaproxy.relay``
* ``embedded``   ``start()``: run dispatcher + relay as a child process
"""
