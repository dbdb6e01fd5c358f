"""Several registrations at the same instant on an empty database, through a
real web2py server: exactly one of them becomes the first admin."""

import threading

import pytest
from conftest import fresh_postgres
from webapp import WebApp

N = 8


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_uri(request):
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres() as uri:
        yield uri


def test_exactly_one_first_admin(tmp_path, sink, empty_db_uri):
    settings = {("app", "first_user_admin"): "true"}
    with WebApp(
        tmp_path / "rt", smtp=sink.server, db_uri=empty_db_uri, settings=settings, worker=False
    ) as app:
        forms = []
        for _i in range(N):
            s = WebApp.session()
            forms.append((s, app.form(s, "/default/user/register")[1]))
        start, results = threading.Barrier(N), [None] * N

        def register(i):
            s, hidden = forms[i]
            data = dict(
                hidden,
                first_name="User%d" % i,
                last_name="Race",
                email="user%d@people.net" % i,
                password="Secret123x",
                password_two="Secret123x",
            )
            start.wait(30)
            results[i] = s.post(
                app.url("/default/user/register"), data=data, timeout=60
            ).status_code

        threads = [threading.Thread(target=register, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        users = app.query("SELECT COUNT(*) FROM auth_user")[0][0]
        admins = app.query(
            "SELECT u.email FROM auth_user u JOIN auth_membership m ON m.user_id=u.id "
            "JOIN auth_group g ON g.id=m.group_id WHERE g.role='admin'"
        )
        groups = app.query("SELECT COUNT(*) FROM auth_group WHERE role='admin'")[0][0]
        print(
            "%d registrations at once on %s: %d users, admins %s"
            % (N, "postgres" if empty_db_uri else "sqlite", users, [a[0] for a in admins])
        )
        assert results == [200] * N and users == N
        assert len(admins) == 1 and groups == 1
        assert not app.errors()
