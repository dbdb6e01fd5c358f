"""Build a web2py runtime folder for this app, outside the source tree.

PyPI's web2py-gluon installs ``gluon`` and ``web2py.py`` but web2py expects a
folder holding ``VERSION``, ``web2py.py`` and ``applications/``; this makes
one and links (or copies) the app into it as ``applications/<name>``.
"""

import os
import shutil
import sys
import sysconfig

APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "Version 2.26.1-stable+timestamp.2023.01.01.00.00.00\n"
# What a copied app leaves out: local state and the developer's virtualenv.
_SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "databases",
    "sessions",
    "errors",
    "cache",
    "uploads",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".hypothesis",
    "bench",
    "tests",
)


def build(runtime, name="outbox", app_dir=APP_DIR, copy=False):
    """Create ``runtime`` with this app as applications/<name>; return its path."""
    site = sysconfig.get_paths()["purelib"]
    apps = os.path.join(runtime, "applications")
    os.makedirs(apps, exist_ok=True)
    shutil.copy(os.path.join(site, "web2py.py"), os.path.join(runtime, "web2py.py"))
    with open(os.path.join(runtime, "VERSION"), "w") as f:
        f.write(VERSION)
    open(os.path.join(apps, "__init__.py"), "a").close()
    # Without it web2py tries to pack a "welcome" app that is not there.
    open(os.path.join(runtime, "welcome.w2p"), "a").close()
    target = os.path.join(apps, name)
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)
    elif os.path.isdir(target):
        shutil.rmtree(target)
    if copy:
        shutil.copytree(app_dir, target, ignore=_SKIP)
    else:
        os.symlink(app_dir, target)
    for folder in ("databases", "sessions", "errors", "cache", "uploads"):
        os.makedirs(os.path.join(target, folder), exist_ok=True)
    return target


if __name__ == "__main__":
    print(build(sys.argv[1]))
