"""delivery/email_internals.py on this Python: each private name of the email
package the outbox uses still exists and does what the outbox assumes."""

import random
import sys
from email.charset import Charset
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText

import s3outbox.delivery.message  # noqa: F401  (registers quoted-printable for UTF-8, as web2py)
from s3outbox.delivery import email_internals as internals


def test_boundary_is_the_one_the_generator_draws():
    random.seed(21)
    drawn = internals.boundary()
    random.seed(21)
    outer = MIMEMultipart("alternative")
    outer.attach(MIMEText("text"))
    assert outer.as_string().count(drawn) == 3  # the header, one part, the end
    assert drawn.startswith("=" * 15) and drawn.endswith("==")
    assert len(drawn) == 15 + len(repr(sys.maxsize - 1)) + 2


def test_set_encoded_payload_makes_mimetexts_part():
    text = "caf\u00e9 = 100%\n" * 40
    charset = Charset("utf-8")
    part = MIMENonMultipart("text", "html", charset="utf-8")
    internals.set_encoded_payload(part, charset.body_encode(text.encode("utf-8")), charset)
    part["Content-Transfer-Encoding"] = "quoted-printable"
    assert part.as_bytes() == MIMEText(text, "html", "utf-8").as_bytes()
    assert part.get_charset() is charset
    assert part.get_payload(decode=True) == text.encode("utf-8")
