"""django-motp: take and refund WeChat Pay / Alipay payments through the MOTP merchant API."""

__version__ = "0.1.0"
