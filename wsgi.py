"""WSGI entry point: ``gunicorn -c gunicorn.conf.py`` (or any WSGI server) serves ``app``.

The configuration comes from ``$CLINVK_CONFIG`` or ``<clinvk home>/config.yaml``
(``CLINVK_HOME``, default ``~/.clinvk``); ``clinvk serve`` does the same in-process.
"""

from clinvk.server.app import create_app

app = create_app()
