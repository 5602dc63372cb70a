"""One file layer for every stage: local paths and object stores through fsspec.

Why fsspec (with ``universal_pathlib``) and not Beam's ``FileSystems``: the same code runs in Beam
workers, in the Dagster process, in the tokenizer and trainer (which never import Beam), pyarrow
reads and writes Parquet/IPC through it, and ``UPath`` keeps the ``pathlib`` idiom — a local path is
a real ``pathlib.Path`` subclass, so local behaviour (atomic renames, ``fsync``) is unchanged.

Supported: local paths (made absolute), ``file://``, ``s3://`` (``s3fs``), ``gs://``/``gcs://``
(``gcsfs``), ``az://``/``abfs://`` (``adlfs``), ``hdfs://`` (pyarrow) and ``memory://``. Credentials
come only from the provider's standard environment/config (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_*``, ``~/.aws``...); ``FSSPEC_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``) points ``s3://`` at
another S3 API. A URI that embeds credentials is refused, so none can leak into logs or manifests.

On object stores there is no atomic rename: a single PUT is atomic per object, so every file is
written once under its final name inside an uncommitted version directory, and the commit protocol in
:mod:`pipelines.storage` makes the version visible only through its manifest and ``CURRENT``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union
from urllib.parse import urlsplit

from upath import UPath

LOCAL_SCHEMES = {"", "file", "local"}
REMOTE_SCHEMES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "hdfs": "pyarrow",
    "memory": "",
}
EXTRAS = {"s3fs": "s3", "gcsfs": "gcs", "adlfs": "azure"}


Location = Union[str, "os.PathLike[str]", UPath]


class FileLayerError(OSError):
    """A path cannot be used: unknown scheme, missing bucket, no credentials, access denied, ..."""


def scheme(uri: str | os.PathLike) -> str:
    text = str(uri)
    if "://" not in text:
        return ""
    return text.split("://", 1)[0].lower()


def is_remote(uri: str | os.PathLike) -> bool:
    return scheme(uri) not in LOCAL_SCHEMES


def resolve(uri: str | os.PathLike) -> str:
    """The canonical form of a configured location: an absolute local path, or ``scheme://...``.

    Raises ``FileLayerError`` for an unknown scheme or a URI with embedded credentials.
    """
    text = os.fspath(uri)
    s = scheme(text)
    if s in ("file", "local"):
        text, s = text.split("://", 1)[1], ""
    if not s:
        return str(Path(text).expanduser().resolve())
    if s not in REMOTE_SCHEMES:
        known = ", ".join(f"{k}://" for k in REMOTE_SCHEMES)
        raise FileLayerError(
            f"{text!r} is neither a local path nor a known storage scheme ({known}); "
            "fix paths.input / paths.data_dir"
        )
    parts = urlsplit(text)
    if parts.password or (parts.username and s != "hdfs"):
        raise FileLayerError(
            f"{redact(text)!r} embeds credentials; remove them from the URI and use the provider's "
            "standard environment variables or config files instead"
        )
    module = REMOTE_SCHEMES[s]
    if module and module != "pyarrow":
        try:
            __import__(module)
        except ImportError as exc:
            raise FileLayerError(
                f"{text!r} needs the {module} package: pip install 'corpusforge[{EXTRAS[module]}]'"
            ) from exc
    return text.rstrip("/") if len(text) > len(s) + 3 else text


def redact(uri: str) -> str:
    """``uri`` without any user:password part."""
    parts = urlsplit(uri)
    if not parts.username and not parts.password:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host).geturl()


def _storage_options(s: str) -> dict[str, Any]:
    if s in ("s3", "s3a"):
        endpoint = os.environ.get("FSSPEC_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def path(uri: Location) -> UPath:
    """A ``UPath`` for a location (local paths are absolute ``pathlib.Path`` subclasses)."""
    if isinstance(uri, UPath):
        return uri
    text = os.fspath(uri)
    s = scheme(text)
    if not s or s in LOCAL_SCHEMES:
        return UPath(resolve(text))
    return UPath(text, **_storage_options(s))


def uri(p: Location) -> str:
    """The string form of a location, with its scheme (what travels to Beam workers)."""
    if isinstance(p, UPath) and is_remote_path(p):
        return str(p)
    return str(os.fspath(p))  # type: ignore[arg-type]


def is_remote_path(p: Any) -> bool:
    return isinstance(p, UPath) and not isinstance(p, Path)


def local_path(p: Any) -> Path | None:
    """``p`` as a local ``Path``, or None on an object store."""
    if is_remote_path(p):
        return None
    return Path(os.fspath(p))


# --------------------------------------------------------------------------------------------------
# writing


def write_bytes(p: Location, data: bytes) -> None:
    """Write ``data`` atomically: local via a temporary file, ``fsync`` and ``os.replace``; on an
    object store as one PUT (atomic per object)."""
    target = path(p)
    local = local_path(target)
    if local is None:
        target.fs.pipe_file(target.path, data)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, local)


def create_exclusive(p: Location, data: bytes) -> bool:
    """Create ``p`` holding ``data`` only if it does not exist; True when this call created it.

    Local: ``O_CREAT | O_EXCL``. S3: a conditional PUT (``If-None-Match: *``). Other stores: write a
    unique token and read it back (a narrow race remains there; documented in docs/scaling.md).
    """
    target = path(p)
    local = local_path(target)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    fs = target.fs
    if scheme(str(target)) in ("s3", "s3a"):
        try:
            fs.pipe_file(target.path, data, mode="create")
            return True
        except (FileExistsError, OSError) as exc:
            if _precondition_failed(exc) or isinstance(exc, FileExistsError):
                return False
            raise
    if fs.exists(target.path):
        return False
    fs.pipe_file(target.path, data)
    return bool(fs.cat_file(target.path) == data)


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc} {getattr(exc, '__cause__', '')}"
    return "PreconditionFailed" in text or "412" in text or "At least one of the pre-conditions" in text


def open_write(p: Location) -> IO[bytes]:
    """A binary file opened for writing (on an object store: a streaming multipart upload)."""
    target = path(p)
    local = local_path(target)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        return open(local, "wb")  # noqa: SIM115 - the caller closes it
    return target.fs.open(target.path, "wb")


def open_read(p: Location) -> IO[bytes]:
    target = path(p)
    local = local_path(target)
    if local is not None:
        return open(local, "rb")  # noqa: SIM115 - the caller closes it
    # io.BufferedReader gives remote files the full binary-file API (readline(limit), peek).
    return io.BufferedReader(target.fs.open(target.path, "rb"), buffer_size=1 << 20)


def mkdirs(p: Location, *, parents: bool = True) -> None:
    """Create a local directory (object stores have no directories: a no-op there)."""
    local = local_path(path(p))
    if local is not None:
        local.mkdir(parents=parents, exist_ok=True)


def rmtree(p: Location) -> None:
    """Delete a directory tree; missing is fine."""
    target = path(p)
    local = local_path(target)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        target.fs.rm(target.path, recursive=True)


def remove(p: Location) -> None:
    target = path(p)
    local = local_path(target)
    try:
        if local is not None:
            local.unlink()
        else:
            target.fs.rm_file(target.path)
    except FileNotFoundError:
        pass


def refresh(p: Any) -> None:
    """Forget cached listings under ``p`` (other processes, e.g. Beam workers, wrote there)."""
    if is_remote_path(p):
        p.fs.invalidate_cache(p.path)


def upload_tree(local_dir: str | os.PathLike, target: Any) -> None:
    """Move a finished local directory to ``target``: a rename locally, a recursive upload remotely."""
    dest = local_path(target)
    if dest is not None:
        os.replace(local_dir, dest)
        return
    target.fs.put(os.fspath(local_dir), target.path, recursive=True)
    shutil.rmtree(local_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# listing


@dataclass(frozen=True)
class FileInfo:
    """One listed file: its location, size and a change stamp (mtime_ns locally, ETag/mtime remotely)."""

    path: UPath
    size: int
    stamp: str


def list_files(root: UPath, pattern: str = "**/*") -> Iterator[FileInfo]:
    """Files under ``root`` matching ``pattern``, with sizes and change stamps from one listing.

    Local broken symlinks are listed (size 0, stamp "-1") so ingestion can record them.
    """
    local = local_path(root)
    if local is not None:
        for f in sorted(local.glob(pattern), key=lambda x: x.as_posix()):  # same order as remote
            if f.is_file() or (f.is_symlink() and not f.exists()):
                entry = UPath(os.fspath(f))  # not resolved: a symlink stays itself
                try:
                    st = f.stat()
                    yield FileInfo(entry, st.st_size, str(st.st_mtime_ns))
                except OSError:
                    yield FileInfo(entry, 0, "-1")
        return
    fs = root.fs
    base = root.path.rstrip("/")
    found = fs.glob(f"{base}/{pattern}", detail=True)
    for name in sorted(found):
        info = found[name]
        if info.get("type") != "file":
            continue
        stamp = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified")
        yield FileInfo(root / name[len(base) + 1 :], int(info.get("size") or 0), str(stamp or ""))


def check_access(location: str, *, write: bool, what: str) -> None:
    """Fail fast, before any work, when ``location`` cannot be listed (or written to).

    The message names the location and what to fix: a missing bucket, missing credentials, access
    denied or an unreachable endpoint.
    """
    target = path(location)
    if local_path(target) is not None:
        return
    fs, key = target.fs, target.path
    bucket = key.split("/", 1)[0]
    try:
        try:
            fs.ls(bucket, detail=False, refresh=True)  # surfaces endpoint, credential and access errors
        except FileNotFoundError:
            raise FileLayerError(
                f"{what} {location!r}: bucket or container {bucket!r} does not exist"
            ) from None
        if write:
            probe = f"{key.rstrip('/')}/.corpusforge-write-probe-{uuid.uuid4().hex[:8]}"
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
    except FileLayerError:
        raise
    except Exception as exc:  # botocore/aiohttp errors differ by provider: classify by message
        raise FileLayerError(f"{what} {location!r}: {_explain(exc)}") from None


def _explain(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lower = text.lower()
    if "credential" in lower or "nocredentials" in lower:
        return "no credentials found; set the provider's standard environment variables (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or config file"
    if "accessdenied" in lower or "forbidden" in lower or "403" in lower or isinstance(exc, PermissionError):
        return "access denied; grant the credentials read/list (and write for the data directory) on it"
    if "connect" in lower or "endpoint" in lower or "timeout" in lower or "name or service" in lower:
        return f"storage endpoint unreachable ({type(exc).__name__}); check the endpoint URL and network"
    return text
