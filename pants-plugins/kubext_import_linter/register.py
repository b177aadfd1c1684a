"""import-linter as a Pants linter: `./pants lint` checks the import contracts in `.importlinter`.

Contracts are about the whole import graph, so every run reads all first-party Python sources,
whichever targets were asked for, with their source roots on the path. import-linter only parses
the sources; no third-party requirement is installed for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pants.backend.python.subsystems.python_tool_base import LockfileRules, PythonToolBase
from pants.backend.python.target_types import ConsoleScript, PythonSourceField
from pants.backend.python.util_rules import pex
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
)
from pants.core.goals.lint import LintResult, LintTargetsRequest
from pants.core.util_rules.config_files import ConfigFiles, ConfigFilesRequest
from pants.core.util_rules.partitions import PartitionerType, Partitions
from pants.engine.fs import Digest, MergeDigests
from pants.engine.process import FallibleProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets, FieldSet
from pants.option.errors import OptionsError
from pants.option.option_types import ArgsListOption, FileOption, SkipOption
from pants.util.logging import LogLevel
from pants.util.strutil import pluralize


class ImportLinter(PythonToolBase):
    options_scope = "import-linter"
    name = "import-linter"
    help = "Import Linter: checks import contracts (https://import-linter.readthedocs.io)."

    default_version = "import-linter>=2,<3"
    default_main = ConsoleScript("lint-imports")
    default_requirements = [default_version]
    register_interpreter_constraints = True
    # Pants 2.17 insists on a built-in lockfile name; this tool always installs from the resolve
    # named by [import-linter].install_from_resolve (checked below), so it is never read.
    default_lockfile_resource = ("kubext_import_linter", "import-linter.lock")
    lockfile_rules_type = LockfileRules.CUSTOM

    skip = SkipOption("lint")
    args = ArgsListOption(example="--verbose --show-timings")
    config = FileOption(
        default=".importlinter",
        advanced=True,
        help="The file holding the contracts (INI, or TOML with [tool.importlinter]).",
    )


@dataclass(frozen=True)
class ImportLinterFieldSet(FieldSet):
    required_fields = (PythonSourceField,)

    source: PythonSourceField


class ImportLinterRequest(LintTargetsRequest):
    field_set_type = ImportLinterFieldSet
    tool_subsystem = ImportLinter
    partitioner_type = PartitionerType.CUSTOM


@rule
async def partition_import_linter(
    request: ImportLinterRequest.PartitionRequest[ImportLinterFieldSet],
    import_linter: ImportLinter,
) -> Partitions[ImportLinterFieldSet, Any]:
    if import_linter.skip or not request.field_sets:
        return Partitions()
    # One run checks the whole graph; a partition of every field set would be cut into batches
    # (`[lint].batch_size`), each repeating that same run.
    return Partitions.single_partition(request.field_sets[:1])


@rule(desc="Check import contracts with import-linter", level=LogLevel.DEBUG)
async def import_linter_lint(
    request: ImportLinterRequest.Batch[ImportLinterFieldSet, Any],
    import_linter: ImportLinter,
    all_targets: AllTargets,
) -> LintResult:
    if not import_linter.install_from_resolve:
        raise OptionsError("Set [import-linter].install_from_resolve to the resolve that locks it.")
    python_targets = [tgt for tgt in all_targets if tgt.has_field(PythonSourceField)]
    tool_pex, sources, config = await MultiGet(
        Get(VenvPex, PexRequest, import_linter.to_pex_request()),
        Get(PythonSourceFiles, PythonSourceFilesRequest(python_targets, include_resources=False)),
        Get(
            ConfigFiles,
            ConfigFilesRequest(
                specified=import_linter.config,
                specified_option_name="[import-linter].config",
            ),
        ),
    )
    input_digest = await Get(
        Digest,
        MergeDigests((sources.source_files.snapshot.digest, config.snapshot.digest)),
    )
    files = sources.source_files.snapshot.files
    result = await Get(
        FallibleProcessResult,
        VenvPexProcess(
            tool_pex,
            argv=("--no-logo", "--no-cache", *import_linter.args, import_linter.config),
            input_digest=input_digest,
            # The packages are found on sys.path, the way they are imported (not installed).
            extra_env={"PEX_EXTRA_SYS_PATH": ":".join(sources.source_roots)},
            description=f"Check import contracts over {pluralize(len(files), 'file')}.",
            level=LogLevel.DEBUG,
        ),
    )
    return LintResult.create(request, result, strip_chroot_path=True)


def rules():
    return [*collect_rules(), *ImportLinterRequest.rules(), *ImportLinter.rules(), *pex.rules()]
