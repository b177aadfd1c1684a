"""Two `docker_image` fields Pants 2.17 lacks.

- `version_file`: tags the image with its service's version, read from that file. Pants 2.17 can
  interpolate a tag only from build args (environment variables) or base-image tags; this keeps the
  VERSION file the one place a service's version is written, and the engine reads it, so a changed
  VERSION retags the next `./pants package`.
- `build_network`: `docker build --network` (as in Pants 2.18+), for RUN steps that reach the
  Debian mirror without podman creating a bridge and firewall rules on the host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pants.backend.docker.target_types import (
    DockerBuildOptionFieldMixin,
    DockerImageTags,
    DockerImageTagsRequest,
    DockerImageTarget,
    OptionValueFormatter,
)
from pants.engine.fs import DigestContents, PathGlobs
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import StringField, Target
from pants.engine.unions import UnionRule
from pants.option.global_options import GlobMatchErrorBehavior

# A Docker tag: up to 128 of these characters, not starting with '.' or '-'.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class VersionFileField(StringField):
    alias = "version_file"
    help = (
        "A file, relative to the BUILD file, whose stripped content is added as an image tag "
        "(kubext: the service's VERSION)."
    )


class BuildNetworkField(DockerBuildOptionFieldMixin, StringField):
    alias = "build_network"
    help = "The network RUN steps use during the build (`docker build --network`), e.g. `host`."
    docker_build_option = "--network"

    def option_values(self, *, value_formatter: OptionValueFormatter) -> Iterator[str]:
        if self.value:
            yield self.value


class VersionFileTagsError(Exception):
    pass


@dataclass(frozen=True)
class VersionFileTagsRequest(DockerImageTagsRequest):
    @classmethod
    def is_applicable(cls, target: Target) -> bool:
        return bool(target.get(VersionFileField).value)


@rule
async def version_file_tags(request: VersionFileTagsRequest) -> DockerImageTags:
    address = request.target.address
    path = f"{address.spec_path}/{request.target[VersionFileField].value}".lstrip("/")
    contents = await Get(
        DigestContents,
        PathGlobs(
            [path],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"the `version_file` of {address}",
        ),
    )
    version = contents[0].content.decode().strip()
    if not _TAG.fullmatch(version):
        raise VersionFileTagsError(f"{path} (version_file of {address}): {version!r} is no tag")
    return DockerImageTags([version])


def rules():
    return [
        *collect_rules(),
        UnionRule(DockerImageTagsRequest, VersionFileTagsRequest),
        DockerImageTarget.register_plugin_field(VersionFileField),
        DockerImageTarget.register_plugin_field(BuildNetworkField),
    ]
