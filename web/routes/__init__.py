"""The control plane's HTTP routes but the UI's pages: ``api`` (/api/v1),
``runtime`` (/api/v1 logs, ps and build plans, from the agent), ``hooks``
(the GitHub webhook)."""
