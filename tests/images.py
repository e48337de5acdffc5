"""Names of the local test images built by scripts/testimages/build.sh.

The tests never pull: `require_image` fails with a clear message when an
image is missing instead of letting Docker reach for a registry."""

from __future__ import annotations

import docker
import docker.errors

APP_IMAGE = "localtest/app:1"
MARIADB_IMAGE = "localtest/mariadb:10.11"
POSTGRES_IMAGE = "localtest/postgres:15"
ALL_IMAGES = (APP_IMAGE, MARIADB_IMAGE, POSTGRES_IMAGE)


class MissingTestImage(RuntimeError):
    pass


def require_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise MissingTestImage(
            f"test image {image} is missing; build it with scripts/testimages/build.sh "
            "(make test does this). Nothing is ever pulled."
        ) from None
