"""Imported by the fault campaign's Celery processes (``CELERY_IMPORTS``): the receipt receiver,
and the campaign's fast clock (see ``campaign_common.FAST_CLOCK``)."""

from tests.campaign_common import connect_receipts, speed_up_clock

speed_up_clock()
connect_receipts()
