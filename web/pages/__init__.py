"""The web UI: server-rendered pages (templates/ui) that call the same
services as the API. ``common``: rendering, CSRF, the signed-in check;
``signin``: sign-in, sign-out, one's account; ``apps``: the apps list and
the new-app form; ``app``: an app's tabs and forms."""
