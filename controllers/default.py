"""Home page, web2py's standard Auth pages (register, login, reset...) and
the page where approvers approve registrations."""


def index():
    return dict()


def user():
    """Auth forms. Mail a person is waiting for is queued at high priority."""
    mail.settings.default_priority = PRIORITY_HIGH
    return dict(form=auth())


def approve():
    """Pending registrations (approve) and one of them (approve/ID)."""
    return auth.approval()


def download():
    return response.download(request, db)
