"""gunicorn settings for running the gateway as ``gunicorn -c gunicorn.conf.py``.

Everything comes from the clinvk configuration (``$CLINVK_CONFIG`` or
``<clinvk home>/config.yaml``): bind address, workers, threads, keep-alive, graceful
timeout, log level, plus the hooks that print the banner and terminate running backend
process groups on shutdown. Before gunicorn starts, the master does what ``clinvk serve``
does: checks the session store, stops backends a killed server left behind and, with
several workers, loads the app's modules for them to share. ``clinvk serve`` uses exactly
the same settings in-process.
Command-line flags given to gunicorn still win over this file.
"""

from clinvk.core.config import load_config
from clinvk.server.runtime.serve import prepare_master

wsgi_app = "wsgi:app"
globals().update(prepare_master(load_config()))
