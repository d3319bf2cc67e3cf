"""gunicorn settings for running the gateway as ``gunicorn -c gunicorn.conf.py``.

Everything comes from the clinvk configuration (``$CLINVK_CONFIG`` or
``<clinvk home>/config.yaml``): bind address, workers, threads, keep-alive, graceful
timeout, log level, plus the hooks that print the banner and terminate running backend
process groups on shutdown. ``clinvk serve`` uses exactly the same settings in-process.
Command-line flags given to gunicorn still win over this file.
"""

from clinvk.core.config import load_config
from clinvk.server.runtime.serve import configure_logging, gunicorn_settings

_config = load_config()
configure_logging(_config)

wsgi_app = "wsgi:app"
globals().update(gunicorn_settings(_config))
