"""The "bmsm" device profile: how the engine gets a poller for a BM-SM string.
Registered through the register_device_profiles hook like any third party's."""

from __future__ import annotations

from btms_gateway.core.config import BusConfig, StringConfig
from btms_gateway.core.profiles import BusLink

from .poller import BmsmPoller


class BmsmProfile:
    name = "bmsm"
    description = "BTMS BM-SM string master (Modbus RTU, up to 120 cells)"

    def create_poller(self, string: StringConfig, bus: BusConfig, link: BusLink) -> BmsmPoller:
        return BmsmPoller(link, string.slave_id)
