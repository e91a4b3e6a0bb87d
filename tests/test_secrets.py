"""Secrets never leave: a fault campaign at DEBUG logging, every log record of every process
captured (the workers and beat log to files, this process to another), and then the password,
every token the gateway gave out and every buyer's auth code searched for everywhere a person
or a log collector can read: the logs, the API call log, the event rows, the payments' and
refunds' messages, and the messages of the errors the services raised.

Its size: ``MOTP_CAMPAIGN_SECRETS_PAYMENTS`` (default 60) and ``MOTP_CAMPAIGN_SECRETS_REFUNDS``
(default 18).
"""

from __future__ import annotations

import json
import os

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from django_motp.models import ApiCall, Event, Payment, Refund
from tests.fixtures_campaign import *  # noqa: F403  (the fixtures)

pytestmark = [
    pytest.mark.campaign,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

PAYMENTS = int(os.environ.get("MOTP_CAMPAIGN_SECRETS_PAYMENTS", "60"))
REFUNDS = int(os.environ.get("MOTP_CAMPAIGN_SECRETS_REFUNDS", "18"))


def rows_as_text(model, *fields) -> str:
    return json.dumps(list(model.objects.values(*fields)), cls=DjangoJSONEncoder)


def test_no_secret_in_logs_rows_or_errors(run_campaign, campaign_sandbox):
    campaign = run_campaign(PAYMENTS, REFUNDS)
    password = campaign_sandbox.state.config.password
    tokens = campaign.secrets - {password} - {c for c in campaign.secrets if c.isdigit()}
    auth_codes = {c for c in campaign.secrets if c.isdigit()}
    # The campaign used what it looks for: the password, tokens (revoked several times, so
    # many), and auth codes of every kind.
    assert password in campaign.secrets
    assert len(tokens) >= 5
    assert len(auth_codes) >= 5

    logs = {path.name: path.read_text(errors="replace") for path in campaign.workdir.iterdir()}
    logs = {name: text for name, text in logs.items() if name.endswith((".log", ".out"))}
    # DEBUG records really were written, by every process.
    for name in ("worker-prefork.log", "worker-threads.log", "test-process.log"):
        assert logs[name].count("DEBUG") > 100, name
    assert "DEBUG" in logs["beat.log"]
    places = {
        **{f"log {name}": text for name, text in logs.items()},
        "API call rows": rows_as_text(ApiCall),
        "event rows": rows_as_text(Event),
        "payment rows": rows_as_text(Payment, "message", "metadata", "attention_note"),
        "refund rows": rows_as_text(Refund, "message", "resolution_note"),
        "errors raised": "\n".join(campaign.refusal_messages + campaign.errors),
    }
    leaks = [
        (place, kind)
        for place, text in places.items()
        for kind, found in (
            ("password", password in text),
            ("a token", any(token in text for token in tokens)),
            ("an auth code", any(code in text for code in auth_codes)),
        )
        if found
    ]
    assert leaks == []
    # What the call log keeps of a pay call: everything but the code, which is masked.
    assert ApiCall.objects.filter(operation="quick_pay").exists()
