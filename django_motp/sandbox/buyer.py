"""The buyer page (``GET /``): the buyer's phone, for a person playing it in a demo.

Plain HTML, no script and no external asset. It lists the orders waiting for the buyer, each with
a Pay and a Decline button (form posts to the control API, which redirects back here), and the
orders settled most recently. It reloads itself every few seconds to show new orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from html import escape
from operator import attrgetter
from urllib.parse import quote

from .state import Config, Order, OrderStatus

RECENT = 20
REFRESH_SECONDS = 5

METHODS = {"native": "Native (QR)", "quick": "Quick pay", "jsapi": "JSAPI"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; }
th, td { padding: .4rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
td.amount { text-align: right; font-variant-numeric: tabular-nums; }
form { display: inline; }
button { padding: .3rem .9rem; }
.SUCCESS { color: #17692b; } .PAYERROR { color: #a11; }
"""


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else ""


def _button(order: Order, action: str, label: str) -> str:
    path = f"/_sandbox/orders/{quote(order.out_trade_no, safe='')}/{action}"
    return f'<form method="post" action="{escape(path)}"><button>{label}</button></form>'


def _pending_cells(order: Order) -> str:
    buttons = f"{_button(order, 'pay', 'Pay')} {_button(order, 'decline', 'Decline')}"
    return f"<td>{_clock(order.created_at)}</td><td>{buttons}</td>"


def _settled_cells(order: Order) -> str:
    status = escape(order.message or order.status)
    return f'<td class="{order.status}">{status}</td><td>{_clock(order.settled_at)}</td>'


def _rows(orders: Iterable[Order], cells: Callable[[Order], str], empty: str) -> str:
    """A table row per order: its number, amounts and method, then ``cells(order)``."""
    rows = [
        "<tr>"
        f"<td>{escape(order.out_trade_no)}</td>"
        f'<td class="amount">{order.amount}</td>'
        f'<td class="amount">{order.buyer_total}</td>'
        f"<td>{METHODS.get(order.method, order.method)}</td>"
        f"{cells(order)}"
        "</tr>"
        for order in orders
    ]
    return "\n".join(rows) or f'<tr><td colspan="6">{empty}</td></tr>'


def render(orders: list[Order], config: Config) -> str:
    """The page for ``orders`` (oldest first): waiting ones, then the ``RECENT`` last settled."""
    pending = [order for order in orders if order.status is OrderStatus.NOTPAY]
    settled = sorted(
        (order for order in orders if order.settled_at is not None),
        key=attrgetter("settled_at"),
        reverse=True,
    )[:RECENT]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>MOTP sandbox: the buyer's phone</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>MOTP sandbox: the buyer's phone</h1>
<p>Merchant user <code>{escape(config.username)}</code>,
store <code>{escape(config.store_id)}</code>.
The buyer pays the amount plus the order's fee rate.</p>
<h2>Waiting for the buyer</h2>
<table>
<tr><th>Order</th><th>Amount (USD)</th><th>Buyer pays</th><th>Method</th><th>Created (UTC)</th>
<th></th></tr>
{_rows(pending, _pending_cells, "No payment is waiting for the buyer.")}
</table>
<h2>Recently settled</h2>
<table>
<tr><th>Order</th><th>Amount (USD)</th><th>Buyer pays</th><th>Method</th><th>Status</th>
<th>At (UTC)</th></tr>
{_rows(settled, _settled_cells, "Nothing settled yet.")}
</table>
</body>
</html>
"""
