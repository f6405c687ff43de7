"""btms-gateway core: data model, configuration, acquisition engine, plugin host.

Plugin authors import what they need from here::

    from btms_gateway.core import hookimpl
"""

from .hookspecs import hookimpl, hookspec
from .version import __version__

__all__ = ["__version__", "hookimpl", "hookspec"]
