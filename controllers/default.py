# -*- coding: utf-8 -*-
"""Home page and web2py's standard Auth pages (register, login, reset...)."""


def index():
    return dict()


def user():
    """Auth forms. Mail a person is waiting for is queued at high priority."""
    mail.settings.default_priority = PRIORITY_HIGH
    return dict(form=auth())


def download():
    return response.download(request, db)
