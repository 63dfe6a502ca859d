"""Telling people how a deploy went: GitHub commit statuses and deployments,
and notifications through Apprise, sent from the agent's outbox.

Whatever happens that someone should hear of becomes ``Notice`` rows (one
per GitHub report, one per notification target), written in a short
transaction by whoever saw it; two threads send them, one per channel, in
order per app (GitHub) or target (notifications), each retried with a
back-off kept on the row. Only the agent writes notices, and only it can
open the GitHub token and the notification URLs (sealed to its key pair,
like secret env values); every value read from a row web can write is
checked again before it is used.

- ``teller.py``: ``Teller``, what the rest of the agent calls (a job queued,
  started, ended; any other event); reads the rows and writes the notices.
- ``say.py``: what is said, pure: each report's GitHub calls, each
  notification's title and body.
- ``outbox.py``: what both channels share: due notices in order per key,
  retries, give-up, prune.
- ``reports.py`` and ``github.py``: the GitHub channel, and its client.
- ``notifications.py``, ``sender.py`` and ``notify_send.py``: the
  notification channel, how it starts the sender, and the sender itself.
- ``crashes.py``: crashes and out-of-memory kills, from Docker's events.

Nothing is imported here: the sender starts as
``python -I -m agent.tell.notify_send``, which runs this file first, and it
must stay small (no database, no GitHub client).
"""
