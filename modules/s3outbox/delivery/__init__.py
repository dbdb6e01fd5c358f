"""The outbox and its delivery: what a message is, where it waits, how it goes out.

Owns the checked message and its wire bytes (message, wire), the outbox
tables and every statement on them (store, one subclass per database in
dialects, shared databases in database), the settings read in one place
(settings; a web2py site's appconfig.ini in appconfig) and what the admin
and the log are told about them (check), what an outcome does to a row
(policy), the session pool (pool), one delivery pass (engine) and the holds
it records (holds), the scheduler task (schedule) and the return path of
each message (returnpath). An upper part adds its own settings, checks and
tables through one hook (``settings.register``). It may import
``transport``, the standard library, pydal and gluon's Mail helpers; it
knows nothing of Auth, of the admin pages, of bounce reports or of Sahana
Eden.
"""
