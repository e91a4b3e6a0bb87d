"""Signals sent when a payment or refund changes state.

Each is sent exactly once per transition, after the transaction that made it commits, by the one
caller whose conditional UPDATE changed the row; with ``send_robust`` semantics, so a receiver that
raises is logged and breaks neither the payment nor the other receivers. ``sender`` is the model
class (``Payment`` or ``Refund``).
"""

from django.dispatch import Signal

#: Sent when a payment is paid (also late, after it had expired or failed). Args: ``payment``.
payment_succeeded = Signal()

#: Sent when the gateway declines a payment. Args: ``payment``.
payment_failed = Signal()

#: Sent when a payment is still unpaid at its deadline. Args: ``payment``.
payment_expired = Signal()

#: Sent on every payment transition. Args: ``payment``, ``old_status``, ``new_status``.
payment_status_changed = Signal()

#: Sent when the gateway confirms a refund. Args: ``refund``.
refund_succeeded = Signal()

#: Sent when a refund is refused, or unconfirmed at its deadline. Args: ``refund``.
refund_failed = Signal()

#: Sent on every refund transition. Args: ``refund``, ``old_status``, ``new_status``.
refund_status_changed = Signal()
