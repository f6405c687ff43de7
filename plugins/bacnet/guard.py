"""What a BACnet client may ask of the device: who, how much, how long.

bacpypes3 0.0.110 serves whoever sends, as much as asked, for as long as
asked, on the event loop the acquisition and every other protocol share.
Here, around its stack:

* **allowlist**: datagrams from outside ``allow`` are dropped before
  bacpypes3 sees them (as the SNMP agent does);
* **unknown services**: a confirmed request bacpypes3 cannot decode
  (SubscribeCOVPropertyMultiple, the audit services, ...) got no answer at
  all, so a client waited out its timeout (12 s); it is now rejected at once
  with reject-reason ``unrecognized-service``, as the standard asks;
* **segmented requests**: bacpypes3 appends segments without limit; a
  request longer than ``max_segments`` (what the device says it accepts) is
  aborted with ``buffer-overflow`` at the first segment past it;
* **decoding**: bacpypes3's decoder takes about 28 us per byte of a request
  (2.6 s for a 94 KB ReadPropertyMultiple); a request longer than
  DECODE_INLINE_BYTES is decoded in a worker thread so the loop goes on;
* **COV subscriptions**: at most ``cov_max_subscriptions`` in all and
  ``cov_max_subscriptions_per_client`` per client host (object and property
  subscriptions together; renewing one does not count twice); more are
  refused with error ``resources``/``no-space-to-add-list-element``. A
  subscription asking for no lifetime (indefinite) or a longer one than
  ``cov_max_lifetime_s`` is granted for ``cov_max_lifetime_s``; its time
  remaining shows in every notification and in active-cov-subscriptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bacpypes3.apdu import (
    APDU,
    AbortPDU,
    AbortReason,
    APCISequence,
    RejectPDU,
    RejectReason,
    confirmed_request_types,
)
from bacpypes3.appservice import ApplicationServiceAccessPoint, ServerSSM
from bacpypes3.errors import ExecutionError
from btms_gateway.core.api import ClientAllowlist

#: a request up to this long is decoded on the loop (about 14 ms at most)
DECODE_INLINE_BYTES = 512


class GuardedServerSSM(ServerSSM):
    """bacpypes3's server transaction, decoding a long request in a thread."""

    async def request(self, apdu: Any) -> None:
        if isinstance(apdu, AbortPDU) or len(apdu.pduData) <= DECODE_INLINE_BYTES:
            await super().request(apdu)
            return
        try:
            decoded = await asyncio.to_thread(APCISequence.decode, apdu)
        except Exception:  # what bacpypes3 does with a request it cannot decode
            decoded = AbortPDU(reason=AbortReason.other)
            decoded.pduSource = self.pdu_address
            decoded.pduDestination = None
            await self.ssmSAP.sap_request(decoded)
            return
        decoded.pduSource = self.pdu_address
        decoded.pduDestination = None
        await self.ssmSAP.sap_request(decoded)


class GuardedASAP(ApplicationServiceAccessPoint):
    """bacpypes3's application service access point, checking each confirmed
    request before a transaction is made for it (see the module docstring)."""

    max_request_segments = 64  # set from the settings

    async def confirmation(self, pdu: Any) -> None:
        data = pdu.pduData
        if len(data) < 4 or data[0] >> 4 != 0 or self.dccEnableDisable != "enable":
            await super().confirmation(pdu)  # not a confirmed request: bacpypes3's rules
            return
        segmented = bool(data[0] & 0x08)
        if len(data) < (6 if segmented else 4):
            await super().confirmation(pdu)
            return
        # read the header first: decoding consumes the PDU's data
        invoke_id, service = data[2], data[5 if segmented else 3]
        too_long = segmented and data[3] >= self.max_request_segments  # sequence number
        if service not in confirmed_request_types:
            reject = RejectPDU(invoke_id, RejectReason.unrecognizedService)
            reject.pduDestination = pdu.pduSource
            await self.request(reject)
            return
        apdu = APDU.decode(pdu)
        tr = next(
            (
                t
                for t in self.serverTransactions
                if t.invokeID == invoke_id and t.pdu_address == apdu.pduSource
            ),
            None,
        )
        if too_long:
            if tr is not None:
                await tr.request(tr.abort(AbortReason.bufferOverflow))  # to the application
            abort = AbortPDU(True, invoke_id, AbortReason.bufferOverflow)
            abort.pduDestination = pdu.pduSource
            await self.request(abort)  # to the client
            return
        if tr is None:
            tr = GuardedServerSSM(self, apdu.pduSource)
            self.serverTransactions.append(tr)
        await tr.indication(apdu)


def install_allowlist(app: Any, allow: list[str], on_drop: Any) -> None:
    """Drop datagrams from outside ``allow`` in each B/IP link layer, before
    bacpypes3 decodes them (``on_drop()`` counts them)."""
    allowlist = ClientAllowlist(allow)
    if allowlist.open:
        return
    for layer in app.link_layers.values():
        server = layer.server
        upward = server.confirmation

        async def confirmation(pdu: Any, upward: Any = upward) -> None:
            if allowlist.allows(pdu.pduSource.addrTuple[0]):
                await upward(pdu)
            else:
                on_drop()

        server.confirmation = confirmation


class CovLimits:
    """Mixin for the application: caps and a maximum lifetime for COV
    subscriptions, object-level (bacpypes3's) and property-level (ours)."""

    cov_max_subscriptions = 4000
    cov_max_subscriptions_per_client = 2000
    cov_max_lifetime_s: int | None = 86400

    if TYPE_CHECKING:  # bacpypes3's Application's and PropertyCOVServices', mixed in with it
        _cov_detections: dict[Any, Any]
        property_subscriptions: Callable[[], list[Any]]

    def granted_lifetime(self, asked: int | None) -> int:
        """The lifetime to grant (0 = indefinite, only without a maximum)."""
        most = self.cov_max_lifetime_s
        if most is None:
            return int(asked or 0)
        return most if not asked or asked > most else int(asked)

    def check_room(self, client: Any) -> None:
        """Refuse a new subscription from ``client`` when a cap is reached."""
        host = _host(client)
        total = mine = 0
        for address in self.subscribers():
            total += 1
            mine += _host(address) == host
        if total >= self.cov_max_subscriptions or mine >= self.cov_max_subscriptions_per_client:
            raise ExecutionError(errorClass="resources", errorCode="noSpaceToAddListElement")

    def subscribers(self) -> list[Any]:
        """The address of every subscription, object and property level."""
        found = [c.client_addr for d in self._cov_detections.values() for c in d.cov_subscriptions]
        return found + [s.client_addr for s in self.property_subscriptions()]


def _host(address: Any) -> Any:
    """A client's host: the IP of a B/IP address (a client has as many UDP
    ports as it likes), else the whole address."""
    return getattr(address, "addrTuple", (address,))[0]
