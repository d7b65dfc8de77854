"""``TritonSegmenter``: the same ``Segmenter`` API, with the model running on a Triton Inference Server.

Only the model call moves to the server. Reading, validation, normalisation
(``pixels / input_scale``), batching, bad-file handling and the ``Result``
(heatmap, score and whatever else a ``Result`` carries) are the ``Segmenter``'s own
code paths, inherited, so a local and a served model give the same results for
the same model file. The model description comes from the server: the input/output
signature from Triton's model metadata, the bgsdk contract (and every other
``bgsdk.*`` entry) from the config ``parameters`` that ``bgsdk export-triton``
writes, and it is checked with the same :func:`bgsdk._session.describe` as a local
file -- same ``ModelError`` messages.

Needs ``pip install 'bgsdk[triton]'`` (tritonclient). HTTP (``http://host:8000``)
or gRPC (``grpc://host:8001``); one client per calling thread, so a
``TritonSegmenter`` can be shared by a thread pool like a ``Segmenter``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .._extras import require
from .._segmenter import Segmenter
from .._session import describe
from ..errors import ModelError

__all__ = ["TritonSegmenter", "parse_server_url", "PROTOCOLS"]

PROTOCOLS = ("http", "grpc")

# Triton datatype -> ONNX Runtime type string, so describe() checks a served model like a local one.
_TYPES = {
    "FP32": "tensor(float)",
    "FP16": "tensor(float16)",
    "FP64": "tensor(double)",
    "UINT8": "tensor(uint8)",
    "INT8": "tensor(int8)",
    "INT32": "tensor(int32)",
    "INT64": "tensor(int64)",
    "BOOL": "tensor(bool)",
}


def parse_server_url(url: str, protocol: str | None = None) -> tuple[str, str, bool]:
    """``(protocol, "host:port", ssl)`` from ``http://h:p``, ``https://h:p``, ``grpc://h:p`` or ``h:p``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = protocol or "http", url
    scheme = scheme.lower()
    ssl = scheme in ("https", "grpcs")
    proto = {"https": "http", "grpcs": "grpc"}.get(scheme, scheme)
    if proto not in PROTOCOLS:
        raise ValueError(f"server URL {url!r}: scheme must be http, https, grpc or grpcs")
    if protocol is not None and protocol != proto:
        raise ValueError(f"server URL {url!r} says {proto} but protocol={protocol!r}")
    address = rest.rstrip("/")
    if not address:
        raise ValueError(f"server URL {url!r} has no host")
    return proto, address, ssl


@dataclass(frozen=True)
class _Arg:
    name: str
    type: str
    shape: list[Any]


@dataclass(frozen=True)
class _Meta:
    custom_metadata_map: Mapping[str, str] = field(default_factory=dict)
    producer_name: str = ""  # not served by Triton; describe() then relies on the metadata keys alone
    graph_name: str = ""
    domain: str = ""
    description: str = ""


class _RemoteSession:
    """The few ``InferenceSession`` methods :func:`describe` uses, answered from Triton's metadata/config."""

    def __init__(self, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        params = config.get("parameters") or {}
        self._meta = _Meta({k: str(v.get("string_value", "")) for k, v in params.items() if isinstance(v, Mapping)})
        self._inputs = [self._arg(a) for a in metadata.get("inputs", [])]
        self._outputs = [self._arg(a) for a in metadata.get("outputs", [])]

    @staticmethod
    def _arg(a: Mapping[str, Any]) -> _Arg:
        dt = str(a.get("datatype", ""))
        shape = [int(d) for d in a.get("shape", [])]  # gRPC's JSON gives int64 as strings
        return _Arg(
            str(a.get("name", "")), _TYPES.get(dt, f"tensor({dt.lower()})"), [d if d > 0 else None for d in shape]
        )

    def get_modelmeta(self) -> _Meta:
        return self._meta

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


class TritonSegmenter(Segmenter):
    """A :class:`~bgsdk.Segmenter` whose model runs on a Triton server.

    >>> seg = TritonSegmenter("http://127.0.0.1:8000", "bgsdk")   # doctest: +SKIP
    >>> seg.run("strip.tiff").heatmap.shape                        # doctest: +SKIP
    (976, 176)

    ``url``: ``http://``, ``https://``, ``grpc://`` or a bare ``host:port``
    (``protocol``, default http). ``model_version``: ``""`` = the server's
    choice. ``timeout_s``: per request. An unreachable server, a model that is
    not ready, a model that does not fit the contract and a failed request
    are :class:`ModelError`; bad images are :class:`InputError`, as locally.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        protocol: str | None = None,
        model_version: str = "",
        timeout_s: float = 60.0,
    ) -> None:
        self._proto, self._address, self._ssl = parse_server_url(url, protocol)
        self._module = require(f"tritonclient.{self._proto}", "triton", "TritonSegmenter")
        self._url, self._model_name, self._version = url, model_name, model_version
        self._timeout = float(timeout_s)
        self._local = threading.local()
        source = f"{url.rstrip('/')}/{model_name}"
        metadata, config = self._describe_remote(source)
        self._max_batch = int(config.get("max_batch_size", 0) or 0)
        self._strict = False
        self._init_from(describe(_RemoteSession(metadata, config), source), None)

    # ----------------------------------------------------------- connection
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            kwargs: dict[str, Any] = {"ssl": self._ssl}
            if self._proto == "http":
                kwargs.update(connection_timeout=self._timeout, network_timeout=self._timeout)
            client = self._module.InferenceServerClient(self._address, **kwargs)
            self._local.client = client
        return client

    def _describe_remote(self, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
        client = self._client()
        try:
            live = client.is_server_live()
        except Exception as exc:
            raise ModelError(self._url, f"cannot reach the Triton server ({_first_line(exc)})") from None
        if not live:
            raise ModelError(self._url, "the Triton server is not live")
        try:
            ready = client.is_model_ready(self._model_name, self._version)
        except Exception as exc:
            raise ModelError(source, f"cannot ask the server about the model ({_first_line(exc)})") from None
        if not ready:
            raise ModelError(
                source, f"model {self._model_name!r} is not loaded/ready on the server{self._loaded_hint(client)}"
            )
        try:
            if self._proto == "grpc":
                metadata = client.get_model_metadata(self._model_name, self._version, as_json=True)
                config = client.get_model_config(self._model_name, self._version, as_json=True).get("config", {})
            else:
                metadata = client.get_model_metadata(self._model_name, self._version)
                config = client.get_model_config(self._model_name, self._version)
        except Exception as exc:
            raise ModelError(source, f"cannot read the model's metadata/config ({_first_line(exc)})") from None
        return dict(metadata), dict(config)

    def _loaded_hint(self, client: Any) -> str:
        try:
            index = (
                client.get_model_repository_index(as_json=True)
                if self._proto == "grpc"
                else client.get_model_repository_index()
            )
            models = index.get("models", []) if isinstance(index, dict) else index
            names = sorted({str(m.get("name")) for m in models if str(m.get("state", "READY")).upper() == "READY"})
            return f" (ready: {', '.join(names) or 'none'})"
        except Exception:
            return ""

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def __enter__(self) -> TritonSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- facts
    @property
    def url(self) -> str:
        return self._url

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def protocol(self) -> str:
        return self._proto

    @property
    def providers(self) -> list[str]:
        return [f"triton-{self._proto}"]

    @property
    def session(self) -> Any:
        """This thread's ``tritonclient`` client (there is no local ONNX Runtime session)."""
        return self._client()

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"TritonSegmenter({self._url!r}, {self._model_name!r}, {h}x{w}, protocol={self._proto})"

    # ------------------------------------------------------------ inference
    def _forward(self, batch: np.ndarray) -> Any:
        """Send ``batch`` to the server, in chunks of the model's ``max_batch_size``."""
        step = self._max_batch if self._max_batch > 0 else len(batch)
        parts = [self._request(batch[i : i + step]) for i in range(0, len(batch), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _request(self, batch: np.ndarray) -> Any:
        m, info = self._module, self._info
        try:
            inp = m.InferInput(info.input_name, list(batch.shape), "FP32")
            if self._proto == "http":
                inp.set_data_from_numpy(np.ascontiguousarray(batch), binary_data=True)
                out = m.InferRequestedOutput(info.output_name, binary_data=True)
                res = self._client().infer(self._model_name, [inp], model_version=self._version, outputs=[out])
            else:
                inp.set_data_from_numpy(np.ascontiguousarray(batch))
                out = m.InferRequestedOutput(info.output_name)
                res = self._client().infer(
                    self._model_name, [inp], model_version=self._version, outputs=[out], client_timeout=self._timeout
                )
            return res.as_numpy(info.output_name)
        except Exception as exc:
            raise ModelError(
                self.model_path, f"inference failed on a batch of {len(batch)}: {_first_line(exc)}"
            ) from exc
