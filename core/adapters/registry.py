"""Which adapter reads which tool's webhooks: the gateway picks one by the path's tool name."""

from __future__ import annotations

from collections.abc import Callable

from leadflow.core.adapters import Adapted, Delivery, canonical, forms, hubspot, mautic, rdstation

ADAPTERS: dict[str, Callable[[Delivery], Adapted]] = {
    "hubspot": hubspot.adapt,
    "rdstation": rdstation.adapt,
    "mautic": mautic.adapt,
    "forms": forms.adapt,
    "canonical": canonical.adapt,
}
