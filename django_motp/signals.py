"""Signals sent when a payment or refund changes state.

Each transition writes one event row (``django_motp.models.Event``) in the transaction of its
conditional UPDATE; the event is delivered after commit inside one transaction that marks it
delivered: ``*_status_changed`` first, then the transition's own signal, with plain ``send``.
A receiver that raises rolls the whole delivery back (what receivers wrote for it is undone) and
the sweep delivers it again later with back-off: exactly once for what receivers write to the
database, at least once for what they do outside it. Receivers get the object read fresh at
delivery. ``sender`` is the model class (``Payment`` or ``Refund``); every signal also carries
``event_id``, the event's UUID.
"""

from django.dispatch import Signal

#: Sent when a payment is paid (also late, after it had expired or failed). Args: ``payment``,
#: ``late`` (True when it had expired or failed first), ``event_id``.
payment_succeeded = Signal()

#: Sent when the gateway declines a payment. Args: ``payment``.
payment_failed = Signal()

#: Sent when a payment is still unpaid at its deadline. Args: ``payment``.
payment_expired = Signal()

#: Sent on every payment transition. Args: ``payment``, ``old_status``, ``new_status``.
payment_status_changed = Signal()

#: Sent when the gateway confirms a refund. Args: ``refund``.
refund_succeeded = Signal()

#: Sent when a refund is refused, the gateway never had it by its deadline, or an operator
#: resolves it as failed. Args: ``refund``.
refund_failed = Signal()

#: Sent on every refund transition. Args: ``refund``, ``old_status``, ``new_status``.
refund_status_changed = Signal()

#: Every signal's name, as ``Event.signal`` records it.
NAMES = (
    "payment_succeeded",
    "payment_failed",
    "payment_expired",
    "payment_status_changed",
    "refund_succeeded",
    "refund_failed",
    "refund_status_changed",
)
