"""The transport: talking to a mail server.

Owns the transport interface (open, send many, close; every result an
``Outcome`` of a ``Kind``), the SMTP transport with ``classify()``, which says
what each SMTP or network error means for a message, and SMTP pipelining and
CHUNKING. It may import only the standard library: nothing of web2py, of
the database or of the rest of s3outbox, so it can be read and tested alone.
"""
