"""``python -m btms_gateway.core`` is the ``btms-gateway`` command."""

from .cli import main

main()
