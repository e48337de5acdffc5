"""The sweep of old volume data that restores gave up (`_data.trash-*`)
and whose deletion in the background (engine.restore.drop) did not finish:
a crash, or a process that exited first. Run with recovery (backup cleanup,
the worker's start and timer)."""

from __future__ import annotations

import logging

from django.conf import settings

from engine.docker_client import connect
from engine.errors import describe
from engine.recovery import volume_dirs
from engine.restore.drop import sweep_trash

logger = logging.getLogger(__name__)


def sweep_old_data() -> list[str]:
    """Delete this host's given-up old volume data; the paths deleted. Never
    raises: the engine unreachable only postpones it to the next round."""
    try:
        dirs = volume_dirs(connect(settings.DOCKER_HOST))
    except Exception as exc:
        logger.warning("old restore data not swept: %s", describe(exc))
        return []
    return sweep_trash(dirs)
