"""Run by scripts/eden_install.py --uninstall inside Eden's models
(``web2py.py -S eden -M -R scripts/eden_retire.py -A [force]``): prints
``s3outbox-retire=`` and the report of s3outbox.eden.retire() as JSON."""

import json
import sys

from s3outbox.eden import retire

print(
    "s3outbox-retire="
    + json.dumps(
        retire(
            current.mail,  # noqa: F821
            force="force" in sys.argv[1:],
        )
    )
)
