"""An index on ``Payment.transaction_id``, for the admin's search by wallet transaction id."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_motp", "0003_money_checks")]

    operations = [
        migrations.AddIndex(
            model_name="payment",
            index=models.Index(fields=["transaction_id"], name="motp_payment_transaction"),
        ),
    ]
