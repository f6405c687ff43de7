"""The byte bound every response obeys, computed alike on both paths.

A GETBULK of one OID with a large max-repetitions made a 40-byte request
return 20 kB (388-516x): a reflection amplifier for anyone who can spoof a
manager's address. Every response is now at most ``max_response_bytes`` of
UDP payload (default 1,472: one Ethernet frame). RFC 3416 4.2.3 lets an
agent answer a GETBULK with fewer variable bindings than asked when the
message would be too large, so a GETBULK gets as many as fit (whole
repetitions when at least one fits); a GET or GETNEXT that does not fit is
answered tooBig with no variable bindings (RFC 3416 4.2.1), and the manager
asks for less.

The budget is for the response's variable-bindings list. Everything else in
the response (version, community or USM header, request-id, error-status
and -index, the PDU and message headers) is at most the same part of the
request plus :data:`SLACK` bytes: the same community, user, request-id and
security parameters; error-status and -index are single-octet INTEGERs where
non-repeaters and max-repetitions are at least as long; what can grow are the
length octets of the enclosing PDU, scoped-PDU, encrypted-PDU and message
(2 each) and the engine boots and time (1 each). The direct path
(direct.py) and pysnmp's responders (responders.py) both call these
functions with the same numbers, so they cut a GETBULK at the same place (a
test compares their replies octet for octet); pysnmp's engine also refuses
to send any message larger than the bound (``snmpEngineMaxMessageSize``).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import ber

#: response octets outside the varbind list that may exceed the request's (see above)
SLACK = 16


def varbind_budget(max_response: int, request: int, request_list: int) -> int:
    """Octets the response's varbind list (its own tag and length included)
    may take, for a request of ``request`` octets whose varbind list took
    ``request_list``."""
    return max_response - (request - request_list) - SLACK


def list_size(body: int) -> int:
    """Octets of a SEQUENCE (the varbind list) whose content is ``body`` octets."""
    return 1 + len(ber.length(body)) + body


def fits(sizes: Sequence[int], budget: int) -> bool:
    return list_size(sum(sizes)) <= budget


def bulk_fit(sizes: Sequence[int], n: int, r: int, budget: int) -> int | None:
    """How many of a GETBULK's varbinds (``n`` non-repeaters, then repetitions
    of ``r``), of the given encoded sizes, go into the response: all when
    they fit; else whole repetitions when at least one fits, else as many
    varbinds as fit. None (answer tooBig) when not even the non-repeaters, or
    not a single varbind, fit."""
    total = fit = 0
    for size in sizes:
        if list_size(total + size) > budget:
            break
        total += size
        fit += 1
    if fit == len(sizes):
        return fit
    if fit == 0 or fit < n:
        return None
    if r and fit >= n + r:
        fit = n + (fit - n) // r * r
    return fit
