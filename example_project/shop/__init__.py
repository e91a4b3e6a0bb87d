"""The example shop: orders paid through django-motp, marked paid and refunded by signals."""
