"""nft in-process: the same commands through libnftables (what the ``nft`` CLI is a front of).

An exec of ``nft`` costs ~6 ms on a quiet node and several times that under load; ipMasq
ADD runs one and DEL two (list, then delete). libnftables parses and sends the same
transaction from this process, with the CLI's output and error text. It keeps
process-wide state (its interface cache), so calls are serialised here; each call gets
a context of its own, opened in the calling thread's network namespace (the host side:
never inside ``netns.entered``). Absent library: ``None``, and the caller execs ``nft``.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4
SONAME = "libnftables.so.1"

_LOCK = threading.Lock()
_lib: ctypes.CDLL | None = None
_loaded = False


@dataclass
class Result:
    ok: bool
    stdout: str
    stderr: str


def _load() -> ctypes.CDLL | None:
    global _lib, _loaded
    if _loaded:
        return _lib
    try:
        lib = ctypes.CDLL(SONAME)
    except OSError:
        lib = None
    if lib is not None:
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    _lib, _loaded = lib, True
    return lib


def run(commands: str, *, json_output: bool = False) -> Result | None:
    """Run ``commands`` (an ``nft -f`` script, or one command) as one ``nft`` call would;
    None when libnftables is not installed."""
    lib = _load()
    if lib is None:
        return None
    with _LOCK:
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            return None
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if json_output:
                lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON)
            status = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        finally:
            lib.nft_ctx_free(ctx)
    return Result(status == 0, out.decode(), err.decode().strip())
