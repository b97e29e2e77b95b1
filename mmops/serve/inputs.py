"""Request body -> checked rows for `predict_frame`.

Every request is checked before it reaches the model (size, JSON types and depth, base64, text
length, image pixels and audio rate, channels and duration from the headers, does the image or
audio decode), and answered with a 4xx whose message names the instance and the field.
Media are checked on the `executor`'s threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import binascii
import json
from concurrent.futures import Executor
from typing import Any, Callable, TypeVar

from fastapi import HTTPException, Request

from mmops.config import MODALITIES
from mmops.features.media import AudioRefused, ImageRefused, open_audio, open_image
from mmops.serve.settings import ServeSettings

# Bodies up to this size are parsed inline (a thread hop costs more than the work); bigger ones
# on a worker thread so one large upload does not stall the event loop.
INLINE_BODY_BYTES = 512 * 1024
B64_SLICE = 1 << 18  # base64 characters decoded per call (a multiple of 4)
T = TypeVar("T")


class BadInput(HTTPException):
    """A client error with a message that names the instance and field; never echoes the data."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def parse_json_instances(payload: Any, max_instances: int) -> list[dict]:
    """`{"instances": [...]}` -> list of {field: str|None}; 422/413 naming the offending spot."""
    if not isinstance(payload, dict):
        raise BadInput(422, f"body must be a JSON object with an 'instances' array, got {_type_name(payload)}")
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise BadInput(422, f"unknown top-level field {unknown[0]!r} (expected 'instances')")
    if "instances" not in payload:
        raise BadInput(422, "missing 'instances' (an array of objects with text, image, audio)")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadInput(422, f"'instances' must be an array, got {_type_name(instances)}")
    if not instances:
        raise BadInput(422, "'instances' is empty")
    if len(instances) > max_instances:
        raise BadInput(413, f"{len(instances)} instances in one request; the limit is {max_instances}")
    out = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise BadInput(422, f"instances[{i}]: must be an object, got {_type_name(inst)}")
        extra = sorted(set(inst) - set(MODALITIES))
        if extra:
            raise BadInput(422, f"instances[{i}].{extra[0]}: unknown field (expected text, image, audio)")
        row = {}
        for name in MODALITIES:
            value = inst.get(name)
            if value is not None and not isinstance(value, str):
                kind = "a string" if name == "text" else "a base64 string"
                raise BadInput(422, f"instances[{i}].{name}: expected {kind} or null, got {_type_name(value)}")
            row[name] = value
        out.append(row)
    return out


def _a2b(text: bytes) -> bytes:
    """Strict base64 -> bytes, a slice at a time: binascii holds the GIL, and 8 MB in one call would
    keep the event loop waiting ~0.1 s."""
    return b"".join(binascii.a2b_base64(text[i : i + B64_SLICE], strict_mode=True)
                    for i in range(0, len(text), B64_SLICE))


def decode_base64(value: str, where: str) -> bytes:
    """Standard base64 (line breaks and a `data:...;base64,` prefix allowed) -> bytes."""
    if value.startswith("data:"):
        head, sep, value = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise BadInput(422, f"{where}: a data URI must be ';base64,' encoded")
    for attempt in (value, "".join(value.split())):  # then MIME-style, line breaks stripped
        try:
            return _a2b(attempt.encode("ascii"))
        except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
            continue
    raise BadInput(422, f"{where}: not valid base64")


def check_image(data: bytes, where: str, max_pixels: int) -> None:
    """The bytes decode as an image of at most `max_pixels` pixels, checked from the header (else 422)."""
    try:
        with open_image(data, max_pixels) as img:
            img.load()
    except ImageRefused as err:
        raise BadInput(422, f"{where}: {err}") from None
    except Exception:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise BadInput(422, f"{where}: not a decodable image") from None


def check_audio(data: bytes, where: str, max_seconds: float, max_channels: int) -> None:
    """The bytes decode as audio (WAV/FLAC/OGG/MP3) whose header passes `open_audio` and says at
    most `max_seconds` (else 422)."""
    try:
        with open_audio(data, max_channels) as f:
            if f.frames <= 0:
                raise BadInput(422, f"{where}: audio has no samples")
            if f.frames / f.samplerate > max_seconds:
                raise BadInput(422, f"{where}: audio is {f.frames / f.samplerate:.1f} s, above the "
                                    f"{max_seconds:g} s limit")
            f.read(frames=min(1024, f.frames), dtype="float32")  # the header parsed; samples decode
    except BadInput:
        raise
    except AudioRefused as err:
        raise BadInput(422, f"{where}: {err}") from None
    except Exception:  # libsndfile's errors
        raise BadInput(422, f"{where}: not decodable audio") from None


def decode_instance(i: int, raw: dict, settings: ServeSettings, base64_media: bool = True) -> dict:
    """One checked instance -> the row `predict_frame` takes (text str, image/audio bytes|None)."""
    row: dict[str, Any] = {"text": raw.get("text") or ""}
    if len(row["text"]) > settings.max_text_chars:
        raise BadInput(422, f"instances[{i}].text: {len(row['text']):,} characters, above the "
                            f"{settings.max_text_chars:,}-character limit")
    checks: dict[str, Callable[[bytes, str], None]] = {
        "image": lambda data, where: check_image(data, where, settings.max_image_pixels),
        "audio": lambda data, where: check_audio(data, where, settings.max_audio_seconds, settings.max_audio_channels),
    }
    for name, check in checks.items():
        value = raw.get(name)
        if value is None or (isinstance(value, (str, bytes)) and len(value) == 0):
            row[name] = None
            continue
        where = f"instances[{i}].{name}"
        data = decode_base64(value, where) if base64_media else bytes(value)
        if not data:
            row[name] = None
            continue
        check(data, where)
        row[name] = data
    if not row["text"].strip() and row["image"] is None and row["audio"] is None:
        raise BadInput(422, f"instances[{i}]: no input (give at least one of text, image, audio)")
    return row


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadInput(400, "invalid Content-Length") from None
        if size > limit:
            raise BadInput(413, f"payload is {size} bytes; the limit is {limit}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadInput(413, f"payload exceeds the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's cache: request.form() parses from it
    return body


async def parse_multipart(request: Request, max_part_size: int) -> dict:
    """One instance from a form: text (a field or a UTF-8 file), image and audio (raw file uploads)."""
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_files=3, max_fields=6, max_part_size=max_part_size)
    except HTTPException as err:  # starlette answers a malformed form with HTTPException(400)
        raise BadInput(400, f"malformed multipart body: {err.detail}") from None
    except Exception:
        raise BadInput(400, "malformed multipart body") from None
    unknown = sorted(set(form.keys()) - set(MODALITIES))
    if unknown:
        raise BadInput(422, f"instances[0].{unknown[0]}: unknown form field (expected text, image, audio)")
    raw: dict[str, Any] = {}
    try:
        for name in MODALITIES:
            value = form.get(name)
            if isinstance(value, UploadFile):
                data = await value.read()
                if name == "text":
                    try:
                        raw[name] = data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise BadInput(422, "instances[0].text: not UTF-8") from None
                else:
                    raw[name] = data
            elif value is not None and name != "text":
                raise BadInput(422, f"instances[0].{name}: expected a file upload")
            else:
                raw[name] = value
    finally:
        await form.close()  # uploads may be spooled to temp files
    return raw


def parse_json(body: bytes) -> Any:
    """JSON body -> Python; 400 when invalid or nested too deeply (refused fast, no deep recursion)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise BadInput(400, "body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput(400, "body is not valid JSON") from None


async def read_rows(request: Request, settings: ServeSettings, executor: Executor | None = None) -> list[dict]:
    """A /predict request (JSON instances or one multipart instance) -> checked rows; media are
    checked on `executor`'s threads (None: the event loop's default executor)."""
    loop = asyncio.get_running_loop()

    async def off_loop(fn: Callable[[], T]) -> T:
        return await loop.run_in_executor(executor, fn)

    body = await read_body(request, settings.max_body_bytes)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        instances, base64_media = [await parse_multipart(request, settings.max_body_bytes)], False
    elif ctype in ("application/json", "") or ctype.endswith("+json"):
        payload = parse_json(body) if len(body) <= INLINE_BODY_BYTES else await off_loop(lambda: parse_json(body))
        instances, base64_media = parse_json_instances(payload, settings.max_instances), True
    else:
        raise BadInput(415, f"unsupported content type {ctype!r}: use application/json or multipart/form-data")

    def decode_all() -> list[dict]:
        return [decode_instance(i, raw, settings, base64_media) for i, raw in enumerate(instances)]

    has_media = any(raw.get(m) for raw in instances for m in ("image", "audio"))
    return await off_loop(decode_all) if has_media else decode_all()
