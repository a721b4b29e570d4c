"""The app for operator commands: ``flask --app webapp.manage quiz import DIR`` / ``cleanup``.

Commands sign no sessions, so this app may run without ``UNMASK_SECRET_KEY`` (it is built as a
local app); everything else is read from the environment as usual.
"""

from webapp import create_app

app = create_app({"LOCAL": True})
