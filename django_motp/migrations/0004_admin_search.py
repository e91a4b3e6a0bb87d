"""An index on ``Payment.transaction_id``, for the admin's search (order number, wallet
transaction id or reference, exactly: the other two have theirs).

Plain SQL (the same on SQLite and PostgreSQL) rather than ``AddIndex``, so that the model's
``Meta.indexes`` stays as it is; ``makemigrations`` does not see it.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("django_motp", "0003_money_checks")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX motp_payment_transaction ON django_motp_payment (transaction_id)",
            reverse_sql="DROP INDEX motp_payment_transaction",
        ),
    ]
