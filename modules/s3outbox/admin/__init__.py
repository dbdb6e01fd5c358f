"""The admin's side: what the dashboard and the command line show and do.

Owns the parameter checks of the admin pages, the queries and actions on the
outbox (counts, lists, retry, cancel, pause, purge, test mail) and the
activity chart. It may import every other part; nothing imports it.
"""
