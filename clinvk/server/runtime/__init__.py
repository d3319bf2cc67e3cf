"""Running the app: `clinvk serve` under gunicorn and its gthread worker."""
