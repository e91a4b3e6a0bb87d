"""Imported by the fault campaign's Celery processes (``CELERY_IMPORTS``): the receipt receiver,
and the campaign's fast clock (see ``fixtures_campaign.FAST_CLOCK``)."""

from tests import fixtures_campaign

fixtures_campaign.speed_up_clock()
fixtures_campaign.connect_receipts()
