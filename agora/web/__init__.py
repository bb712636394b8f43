"""The dashboard: a read-only JSON API and HTML pages over the projection tables.

``api.create_app`` builds the application, ``server.serve_dashboard`` serves it; see
docs/dashboard.md.
"""
