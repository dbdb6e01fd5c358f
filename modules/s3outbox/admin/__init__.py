"""The admin's side: what the dashboard and the command line show and do.

Owns the queries and actions on the outbox (outbox: counts, lists, retry,
cancel, pause, purge, test mail), the checks of their parameters (params),
the settings as the pages show them (summary) and the activity chart
(chart). It may import every other part; nothing imports it.
"""
