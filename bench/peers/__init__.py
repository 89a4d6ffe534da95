"""Peer benchmark: horizon against RQ, Celery, Dramatiq and Huey on one Redis (see run.py)."""
