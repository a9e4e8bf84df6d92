"""dyld's image list, read out of a target's memory: every loaded image with its headers.

``task_info(TASK_DYLD_INFO)`` (called by the target) locates ``dyld_all_image_infos``;
:func:`read_images` follows it to the ``dyld_image_info`` array and the path strings,
adds dyld itself (``dyldImageLoadAddress``), and reads each image's own Mach-O header
and load commands from memory (:mod:`macminidump.macho_headers`) for its UUID and
segments. It needs only a ``read`` function (address, size -> the bytes that could be
read), so it makes no Mach call.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from ...errors import CaptureError, ParseError
from ...macho_headers import read_headers
from ...model import Image
from . import abi

#: reads the target's memory: (address, size) -> up to size bytes, short where refused
Read = Callable[[int, int], bytes]

#: longest image path read from the target (MAXPATHLEN is 1024; be generous)
MAX_PATH = 4096
#: image paths are read in chunks that never cross a 256-byte boundary, hence no page
_STRING_CHUNK = 256


def read_images(dyld_info: abi.task_dyld_info, read: Read) -> list[Image]:
    """The images dyld lists (then dyld itself) from ``task_info(TASK_DYLD_INFO)``'s answer."""
    if dyld_info.all_image_info_format != abi.TASK_DYLD_ALL_IMAGE_INFO_64:
        raise CaptureError("the target's dyld image list is 32-bit: not supported")
    full = ctypes.sizeof(abi.dyld_all_image_infos)
    size = min(dyld_info.all_image_info_size, full)
    raw = _read_exact(read, dyld_info.all_image_info_addr, size, "dyld_all_image_infos")
    infos = abi.dyld_all_image_infos.from_buffer_copy(raw.ljust(full, b"\0"))
    entries: list[tuple[int, int]] = []  # (load address, path address)
    if infos.infoArray and infos.infoArrayCount:
        # infoArray is NULL while dyld rewrites the list: then only dyld is known
        entry_size = ctypes.sizeof(abi.dyld_image_info)
        table = _read_exact(
            read, infos.infoArray, infos.infoArrayCount * entry_size, "the dyld_image_info array"
        )
        for i in range(infos.infoArrayCount):
            e = abi.dyld_image_info.from_buffer_copy(table, i * entry_size)
            entries.append((int(e.imageLoadAddress), int(e.imageFilePath)))
    # a field exists when the version says so (v2: dyld's address, v15: its path) and the
    # size dyld declared covers it
    dyld_field = abi.dyld_all_image_infos.dyldImageLoadAddress
    has_dyld = infos.version >= 2 and size >= dyld_field.offset + dyld_field.size
    dyld = int(infos.dyldImageLoadAddress) if has_dyld else 0
    if dyld and all(load != dyld for load, _ in entries):
        has_path = infos.version >= 15 and size >= abi.dyld_all_image_infos.dyldPath.offset + 8
        entries.append((dyld, int(infos.dyldPath) if has_path else 0))
    images = []
    for load_address, path_address in entries:
        path = _read_cstring(read, path_address) if path_address else ""
        if not path and load_address == dyld:
            path = "/usr/lib/dyld"
        images.append(read_image(read, load_address, path or f"<image at {load_address:#x}>"))
    return images


def read_image(read: Read, load_address: int, path: str) -> Image:
    """The image at ``load_address`` from its Mach-O header and load commands in memory;
    only its address when they cannot be read or are malformed."""
    try:
        headers = read_headers(lambda offset, size: read(load_address + offset, size))
    except ParseError:
        return Image(path=path, load_address=load_address)
    slide = headers.slide_for(load_address)
    return Image(
        path=path,
        uuid=headers.uuid,
        load_address=load_address,
        slide=slide,
        segments=headers.segments_at(slide or 0),
        main=headers.is_executable,
    )


def _read_exact(read: Read, address: int, size: int, what: str) -> bytes:
    data = read(address, size)
    if len(data) != size:
        raise CaptureError(
            f"cannot read {what} at {address:#x}: mach_vm_read_overwrite gave "
            f"{len(data)} of {size} bytes"
        )
    return data


def _read_cstring(read: Read, address: int) -> str:
    out = bytearray()
    while len(out) < MAX_PATH:
        here = address + len(out)
        chunk = read(here, _STRING_CHUNK - here % _STRING_CHUNK)
        if not chunk:
            break
        end = chunk.find(b"\0")
        if end >= 0:
            out += chunk[:end]
            break
        out += chunk
    return out.decode("utf-8", "replace")
