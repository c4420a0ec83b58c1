"""Build hook: refuse to build when a file going into the wheel or sdist leaves the project.

hatchling follows symlinks when it collects files, so a partial such as
``prompts/_partials/env.j2 -> /proc/self/environ`` would put the target's bytes (an API key
in the environment, ``/etc/passwd``, a home folder) into the artifact, and from there into
every installation. This hook lists exactly the files the target would include and stops
the build, naming each link and where it leads, when one resolves outside the project.
``promptlib`` itself refuses such links when it loads a library (``promptlib._paths``); this
hook covers the one reader that does not go through promptlib: the build.

pyproject.toml names it (``[tool.hatch.build.hooks.custom]``). It lives in ``src/`` beside
the package, not in it, so that it is never shipped, and it imports nothing but hatchling,
which is all a build environment holds.
"""

from __future__ import annotations

import os
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ContainedFilesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = os.path.realpath(self.root)
        outside = []
        for included in self.build_config.builder.recurse_included_files():
            target = os.path.realpath(included.path)
            if os.path.commonpath([root, target]) != root:
                shown = os.path.relpath(included.path, self.root)
                outside.append(f"  {shown} -> {target}")
        if outside:
            raise RuntimeError(
                "\n".join(
                    [
                        f"refusing to build the {self.target_name}: these files lead outside "
                        f"the project through a symlink, and the {self.target_name} would "
                        "carry their content:",
                        *outside,
                        "copy the files into the project, or remove the links",
                    ]
                )
            )
