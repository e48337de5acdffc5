"""The test stacks look to Docker exactly like `docker compose up` made them,
and tearing them down touches nothing the tests did not create."""

from __future__ import annotations

import docker
import pytest

from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, odoo_stack, random_project

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_wordpress_stack_has_compose_labels_and_names(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    project = wordpress.project
    found = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={project}"}
    )
    assert sorted(c.name for c in found) == sorted(
        [f"{project}-mariadb-1", f"{project}-wordpress-1"]
    )
    for container in found:
        labels = container.labels
        assert labels["com.docker.compose.project.working_dir"] == str(wordpress.working_dir)
        assert labels["com.docker.compose.project.config_files"] == str(wordpress.config_file)
        assert labels["com.docker.compose.service"] in {"mariadb", "wordpress"}
        assert labels["com.docker.compose.oneoff"] == "False"
    volumes = docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
    assert sorted(v.name for v in volumes) == [f"{project}_mysql_data", f"{project}_wordpress"]
    assert {v.attrs["Labels"]["com.docker.compose.volume"] for v in volumes} == {
        "mysql_data",
        "wordpress",
    }
    assert wordpress.config_file.read_text().startswith("services:")
    assert "MYSQL_ROOT_PASSWORD=" in (wordpress.working_dir / ".env").read_text()
    # The app container seeded its files volume, as WordPress does.
    listing = wordpress.exec("wordpress", ["ls", "-a", "/var/www/html"])
    assert {"index.php", "content", "link-to-index", ".seeded"} <= set(listing.split())


def test_teardown_removes_only_what_the_stack_created(
    docker_client: docker.DockerClient, tmp_path
) -> None:
    project = random_project("odoo")
    # A bystander carrying the same project label, as another tool might make.
    bystander_volume = docker_client.volumes.create(
        name=f"{project}_bystander", labels={"com.docker.compose.project": project}
    )
    bystander = docker_client.containers.create(
        APP_IMAGE, ["sleep", "60"], labels={"com.docker.compose.project": project}
    )
    stack = odoo_stack(docker_client, project, tmp_path / project)
    try:
        stack.up()
        assert len(docker_client.volumes.list(filters={"name": project})) == 3
        stack.remove()
        left = {v.name for v in docker_client.volumes.list(filters={"name": project})}
        assert left == {bystander_volume.name}
        bystander.reload()  # raises NotFound if teardown had removed it
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(f"{project}-postgres-1")
    finally:
        stack.remove()
        bystander.remove(force=True)
        bystander_volume.remove(force=True)
