"""Check that the built wheel and sdist carry every template, static file, migration and
translation (the compiled ``.mo`` files too)."""

import sys
import tarfile
import zipfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent
dist = Path(sys.argv[1])
package = root / "django_motp"
wanted = sorted(
    str(path.relative_to(root))
    for folder in ("templates", "static", "migrations", "locale")
    for path in (package / folder).rglob("*")
    if path.is_file() and "__pycache__" not in path.parts
)
if not any("migrations/0001" in name for name in wanted):
    sys.exit("no initial migration found in django_motp/migrations")
if not any(name.endswith(".mo") for name in wanted):
    sys.exit("no compiled translation (.mo) found in django_motp/locale")

wheel = next(dist.glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    in_wheel = set(archive.namelist())
sdist = next(dist.glob("*.tar.gz"))
with tarfile.open(sdist) as archive:
    in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

missing = [f"wheel: {n}" for n in wanted if n not in in_wheel]
missing += [f"sdist: {n}" for n in wanted if n not in in_sdist]
if missing:
    sys.exit("missing from the distributions:\n  " + "\n  ".join(missing))
print(
    f"{wheel.name} and {sdist.name} carry all {len(wanted)} templates, static files, "
    "migrations and translations"
)
