"""The native REST API (/api/v1): schemas and views."""
