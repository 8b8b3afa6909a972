"""Publish a reconstruction as a Bluesky analysis run (``event_model.compose_run``), linked to
the raw run by ``raw_uid``, so that run-oriented clients (databroker, the Tiled run browser) see
it beside the raw data."""

from __future__ import annotations

from typing import Any

from bcdi_stream.tiled_io import ScanResult, jsonable

__all__ = ["analysis_documents", "publish_analysis_run"]

_FIELDS = ("strain_min", "strain_max", "strain_rms", "strain_mean", "llk", "chi2")


def analysis_documents(result: ScanResult) -> list[tuple[str, dict[str, Any]]]:
    """The documents of the analysis run of one result: start (``plan_name:
    bcdi_reconstruction``, ``raw_uid``, ``processed_path``), one event of scalar results, stop."""
    from event_model import compose_run

    bundle = compose_run(metadata=jsonable({
        "plan_name": "bcdi_reconstruction",
        "raw_uid": result.raw_uid,
        "processed_path": result.path,
        "status": result.status,
        "method": result.method,
        "scan_id": result.scan.get("scan_id"),
        "sample": result.scan.get("sample"),
        "timings": result.timings,
    }))
    values = {k: result.summary.get(k) for k in _FIELDS}
    data = {k: float(v) if isinstance(v, (int, float)) else float("nan")
            for k, v in values.items()}
    data["latency"] = float(result.timings.get("latency", float("nan")))
    keys = {k: {"source": "bcdi-stream", "dtype": "number", "shape": []} for k in data}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    now = desc.descriptor_doc["time"]
    event = desc.compose_event(data=data, timestamps=dict.fromkeys(data, now))
    stop = bundle.compose_stop(exit_status="success" if result.ok else "fail",
                               reason=result.error or "")
    return [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc),
            ("event", event), ("stop", stop)]


def publish_analysis_run(client: Any, result: ScanResult) -> str:
    """Write the analysis run of ``result`` to Tiled with a ``TiledWriter``; returns its uid."""
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client)
    docs = analysis_documents(result)
    for name, doc in docs:
        writer(name, doc)
    return docs[0][1]["uid"]
