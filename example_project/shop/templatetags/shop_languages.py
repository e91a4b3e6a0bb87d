"""``{% shop_languages as languages %}``: the shop's languages for its switcher, each named in its
own language as ``settings.LANGUAGES`` names it (``get_available_languages`` would translate the
names into the current language: 英语 for English on a Chinese page)."""

from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def shop_languages() -> list[tuple[str, str]]:
    return [(code, str(name)) for code, name in settings.LANGUAGES]
