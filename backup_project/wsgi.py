"""WSGI entry point (gunicorn backup_project.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backup_project.settings")
application = get_wsgi_application()
# What was loaded so far (Django, the apps, their modules: ~150,000 objects)
# lives as long as the process: kept out of the collector's full passes, so
# a request that makes many objects (GET apps of 400 apps) does not pay for
# walking them all (bench/bench_fleet.py: p95 roughly halved).
gc.freeze()
