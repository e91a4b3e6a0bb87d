"""``python -m django_motp.sandbox``: run the sandbox gateway (``--help`` lists the options)."""

from .cli import main

raise SystemExit(main())
