"""Smoke tests of the real Docker engine and the local test images: each
image runs, and the database images behave like the official ones."""

from __future__ import annotations

import secrets

import docker
import pytest

from tests.images import APP_IMAGE, MARIADB_IMAGE, POSTGRES_IMAGE
from tests.stacks import TEST_LABEL, ComposeStack, wait_for_mariadb, wait_for_postgres, wait_until

pytestmark = [pytest.mark.docker]


def test_app_image_has_sh_tar_and_sleep(docker_client: docker.DockerClient) -> None:
    container = docker_client.containers.create(
        APP_IMAGE, ["sh", "-c", "echo hi | tar --help >/dev/null 2>&1; which tar sleep sh"]
    )
    try:
        container.start()
        assert container.wait(timeout=30)["StatusCode"] == 0
        out = container.logs().decode()
        assert "/bin/tar" in out and "/bin/sleep" in out and "/bin/sh" in out
    finally:
        container.remove(force=True)


@pytest.mark.slow
def test_wordpress_stack_mariadb_answers_with_env_credentials(wordpress: ComposeStack) -> None:
    env = wordpress.services[0].environment
    out = wordpress.exec(
        "mariadb",
        ["mariadb", "-uroot", "-N", "-e", "SELECT VERSION(); SHOW DATABASES"],
        environment={"MYSQL_PWD": env["MYSQL_ROOT_PASSWORD"]},
    )
    assert "MariaDB" in out and "wordpress" in out.split()
    # The app user the stack asked for exists, with its password, over TCP.
    out = wordpress.exec(
        "mariadb",
        ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uwordpress", "-N", "wordpress",
         "-e", "SELECT CURRENT_USER()"],
        environment={"MYSQL_PWD": env["MYSQL_PASSWORD"]},
    )  # fmt: skip
    assert out.strip() == "wordpress@%"


@pytest.mark.slow
def test_odoo_stack_postgres_user_is_app_id_with_trust(odoo: ComposeStack) -> None:
    out = odoo.exec(
        "postgres",
        ["psql", "-h", "127.0.0.1", "-U", odoo.project, "-d", "postgres", "-tAc",
         "SELECT current_user || ' ' || version()"],
    )  # fmt: skip
    assert out.startswith(f"{odoo.project} PostgreSQL 15")


@pytest.mark.slow
def test_mariadb_data_survives_restart_without_reinit(wordpress: ComposeStack) -> None:
    env = {"MYSQL_PWD": wordpress.services[0].environment["MYSQL_ROOT_PASSWORD"]}
    sql = "CREATE TABLE t (v INT); INSERT INTO t VALUES (42)"
    wordpress.exec("mariadb", ["mariadb", "-uroot", "wordpress", "-e", sql], env)
    db = wordpress.container("mariadb")
    db.restart(timeout=30)
    wait_for_mariadb(db, env["MYSQL_PWD"])
    out = wordpress.exec("mariadb", ["mariadb", "-uroot", "-N", "wordpress", "-e",
                                     "SELECT v FROM t"], env)  # fmt: skip
    assert out.strip() == "42"
    assert db.logs().decode().count("Initializing database") == 1


@pytest.mark.slow
def test_postgres_password_auth_from_another_container(
    docker_client: docker.DockerClient,
) -> None:
    """As in the official image, local connections inside the container are
    trusted; from another container on the network the password counts."""
    suffix = secrets.token_hex(4)
    network = docker_client.networks.create(f"pgcheck_{suffix}", labels={TEST_LABEL: "1"})
    server = docker_client.containers.create(
        POSTGRES_IMAGE, name=f"pgcheck-server-{suffix}", network=network.name,
        environment={"POSTGRES_PASSWORD": "right", "POSTGRES_DB": "shop"},
    )  # fmt: skip
    # A second container of the same image, used only as a psql client.
    client = docker_client.containers.create(
        POSTGRES_IMAGE, ["sleep", "300"], entrypoint=[], network=network.name
    )
    try:
        server.start()
        client.start()
        wait_for_postgres(server, "postgres")
        psql = ["psql", "-h", server.name, "-U", "postgres", "-d", "shop", "-tAc", "SELECT 7"]
        ok = client.exec_run(psql, environment={"PGPASSWORD": "right"})
        bad = client.exec_run(psql, environment={"PGPASSWORD": "wrong"})
        assert ok.exit_code == 0 and ok.output.strip() == b"7", ok.output
        assert bad.exit_code != 0 and b"password authentication failed" in bad.output
    finally:
        client.remove(force=True, v=True)
        server.remove(force=True, v=True)
        network.remove()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (MARIADB_IMAGE, "password option is not specified"),
        (POSTGRES_IMAGE, "superuser password is not specified"),
    ],
)
def test_database_images_refuse_to_start_without_a_password(
    docker_client: docker.DockerClient, image: str, message: str
) -> None:
    container = docker_client.containers.create(image)
    try:
        container.start()
        wait_until(lambda: container.reload() or container.status == "exited", 30, "exit")
        assert container.wait(timeout=10)["StatusCode"] != 0
        assert message in container.logs().decode()
    finally:
        container.remove(force=True, v=True)
