"""Cores written by other tools, from tests/corpus/macho/ (SOURCES.md says where from).

``lldb-mach-core-test.core.yaml`` is obj2yaml's dump of a core LLDB's ``process
save-core`` wrote on x86_64 macOS; Debian's ``yaml2obj-16`` turns it back into the
1.2 GB core (zero-filled segment data), which must open lazily: quickly, and without
reading or holding its gigabyte.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from macminidump import ParseError, parse_core
from macminidump.macho.parse import MachOCore
from macminidump.macho.render import render_macho_bytes

CORPUS = Path(__file__).resolve().parent / "corpus" / "macho"
SAVE_CORE_YAML = CORPUS / "yaml" / "lldb-mach-core-test.core.yaml"
FUZZED = sorted((CORPUS / "fuzzed").glob("*.bin"))


@pytest.fixture(scope="module")
def save_core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool = shutil.which("yaml2obj-16")
    assert tool, "yaml2obj-16 is missing: apt-get install -y llvm-16"
    out = tmp_path_factory.mktemp("savecore") / "test.core"
    subprocess.run([tool, str(SAVE_CORE_YAML), "-o", str(out)], check=True, timeout=600)
    return out


class _Obj2YamlLoader(yaml.SafeLoader):
    """obj2yaml tags its document `!mach-o`: read it as the plain mapping it is."""


_Obj2YamlLoader.add_multi_constructor(
    "!", lambda loader, _suffix, node: loader.construct_mapping(node, deep=True)
)


def test_lldb_save_core_opens_lazily(save_core: Path) -> None:
    described = yaml.load(SAVE_CORE_YAML.read_text(), Loader=_Obj2YamlLoader)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    core = MachOCore.open(save_core)
    snapshot = core.snapshot()
    elapsed = time.perf_counter() - started
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before

    assert save_core.stat().st_size > 1_000_000_000
    assert elapsed < 5, f"opening took {elapsed:.2f}s: something read the whole file"
    assert rss_growth_kib < 64 * 1024, f"RSS grew by {rss_growth_kib} KiB"

    header = described["FileHeader"]
    assert core.header["ncmds"] == header["ncmds"] == 59
    assert snapshot.arch.value == "x86_64"
    commands = described["LoadCommands"]
    segments = [c for c in commands if c["cmd"] == "LC_SEGMENT_64"]
    assert len(snapshot.regions) == len(segments) == 58
    for region, seg in zip(snapshot.regions, segments):
        assert region.address == seg["vmaddr"] and region.size == seg["filesize"]
        assert int(region.protection) == seg["initprot"]
    assert len(snapshot.threads) == 1
    gpr = snapshot.threads[0].gpr
    # the thread's first flavor is x86_THREAD_STATE64: rip/rsp as LLDB saved them
    assert gpr["rip"] == 0x100000FA0 and gpr["rsp"] == 0x7FFEEFBFF5F0
    assert snapshot.threads[0].exception  # flavor 6, x86_EXCEPTION_STATE64
    # memory is served from the file (zeros here: obj2yaml kept no contents)
    first = snapshot.regions[0]
    assert snapshot.memory.read(first.address, 16) == bytes(16)


def test_lldb_save_core_writes_back(save_core: Path, tmp_path: Path) -> None:
    """Parsed and re-rendered, the LLDB core keeps every thread and segment; no notes added."""
    snapshot = parse_core(save_core)
    small = type(snapshot)(
        arch=snapshot.arch, threads=snapshot.threads, regions=snapshot.regions[:3]
    )
    again = MachOCore(render_macho_bytes(small))
    assert again.snapshot().threads == snapshot.threads
    assert [n.owner for n in again.notes] == ["process metadata"]


@pytest.mark.parametrize("path", FUZZED, ids=lambda p: p.name[:30])
def test_fuzzed_header_is_rejected_clearly(path: Path) -> None:
    with pytest.raises(ParseError, match="big-endian Mach-O files are not supported"):
        parse_core(path)


def test_fuzzed_corpus_is_present() -> None:
    assert FUZZED, f"no fuzzed sample in {CORPUS / 'fuzzed'}"
