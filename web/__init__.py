"""Flask app factory, /horizon/api blueprints, dashboard page and static assets."""
