from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = _("Shop")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connecting here, not at import time of models, is what Django recommends: the
        # receivers are connected once, whichever process (web, worker) loads the app.
        from . import receivers

        receivers.connect()
