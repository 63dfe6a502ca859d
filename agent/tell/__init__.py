"""Telling people how a deploy went: GitHub commit statuses and deployments,
and notifications through Apprise, sent from the agent's outbox.

``teller.py`` is what the rest of the agent calls (``Teller``); the modules
beside it are its parts. Nothing is imported here: the notification sender
starts as ``python -I -m agent.tell.notify_send``, which runs this file
first, and it must stay small (no database, no GitHub client).
"""
