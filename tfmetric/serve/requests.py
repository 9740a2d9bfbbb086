"""What a search request asks for, read from its body and query string, and the error it gets.

A search body is either the image's bytes (``Content-Type: image/jpeg`` or ``image/png``) or JSON
``{"b64": "<base64 of the bytes>", "k": 10, "mode": "float"}``. ``k`` and ``mode`` may also come
in the query string (``?k=10&mode=rescore``); the JSON fields win. Status codes:

    400  malformed request: empty body, bad JSON, no or bad "b64"
    413  body over the limit, or an image that declares more pixels than the model accepts
    415  a Content-Type or an image format other than JPEG / PNG
    422  a well-formed request with a bad value: k, mode, an image that does not decode
    503  the service is busy (every worker busy and the queue full): retry later
"""

import base64
import binascii
import json
from typing import NamedTuple

from tfmetric.search.modes import FLOAT, MODES

IMAGE_TYPES = ("image/jpeg", "image/png")
JSON_TYPE = "application/json"
DEFAULT_K = 10


class RequestError(Exception):
    """A request the service refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = int(status), message


class SearchRequest(NamedTuple):
    image: bytes
    k: int
    mode: str


def _k(value):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RequestError(422, f"k must be an integer. Received: k={value!r}")
    try:
        return int(value)
    except ValueError:
        raise RequestError(422, f"k must be an integer. Received: k={value!r}") from None


def _mode(value):
    if value not in MODES:
        raise RequestError(422, f"unknown mode {value!r}: use one of {', '.join(MODES)}.")
    return value


def _json_image(body):
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, f"the body is not valid JSON ({e}).") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("b64"), str):
        raise RequestError(400, 'a JSON body must be an object with "b64": the image\'s bytes in base64.')
    try:
        image = base64.b64decode(payload["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, '"b64" is not valid base64.') from None
    return image, payload


def parse_search(content_type, body, params):
    """A SearchRequest from the Content-Type header, the body bytes and the query parameters."""
    media = (content_type or "").split(";")[0].strip().lower()
    if not body:
        raise RequestError(
            400,
            'empty request body: send the image\'s bytes (Content-Type image/jpeg or image/png) or JSON {"b64": ...}.',
        )
    if media == JSON_TYPE:
        image, fields = _json_image(body)
    elif media in IMAGE_TYPES or media in ("", "application/octet-stream"):
        image, fields = body, {}
    else:
        raise RequestError(
            415, f"Content-Type {media!r} is not accepted: send {', '.join(IMAGE_TYPES)} bytes or {JSON_TYPE}."
        )
    if not image:
        raise RequestError(400, 'empty image: "b64" decodes to zero bytes.')
    k = _k(fields.get("k", params.get("k", DEFAULT_K)))
    mode = _mode(fields.get("mode", params.get("mode", FLOAT)))
    return SearchRequest(image, k, mode)
