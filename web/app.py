"""WSGI entry point for external servers: ``gunicorn 'web.app:create_app()'`` (config from HORIZON_CONFIG)."""

from web import create_app

__all__ = ["create_app"]
