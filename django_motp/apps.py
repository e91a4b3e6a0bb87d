from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MotpConfig(AppConfig):
    name = "django_motp"
    label = "django_motp"
    verbose_name = _("MOTP payments")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
