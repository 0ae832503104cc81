"""OTLP intake: the agent stands where a node-local collector stands.

Applications send OTLP (gRPC on ``[intake] otlp_grpc`` / ``--otlp-listen``, HTTP with
protobuf bodies on ``otlp_http`` / ``--otlp-http-listen``; both off by default, loopback
unless a wider address is given). Of what arrives:

- spans whose name matches ``span_stages`` (names or globs) become measured stage spans,
  pair ``<name>.start-><name>.end``, keeping their trace and span ids; once they have their
  power they are forwarded upstream as the same spans with ``benchlab.power.mean.<source>``
  and ``benchlab.energy.<source>`` added (``IntakeEnricher``);
- span events named in ``event_stages`` become marks and pair like any marks;
- everything else (other spans, metrics, logs) is forwarded unchanged (exporters/
  otlp_forward.py);
- with the kubelet's PodResources (``otel_benchlab.k8s``), a measured span whose resource
  names its pod (``k8s.namespace.name``, ``k8s.pod.name``) gets ``benchlab.gpu.ids``: the
  GPUs (UUIDs) that pod holds. A full forward queue answers UNAVAILABLE / 503, so the application's
  exporter retries, as with a busy collector.

Frame ids come from the span's or event's ``frame_attribute`` (default ``benchlab.frame``),
the stream from ``benchlab.stream`` (default ``main``), the pipeline from the resource's
``service.name``.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import socket
import threading
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from otel_benchlab.agent.bounded_http import BoundedHTTPServer, BoundedRequestHandler
from otel_benchlab.components import BuildContext, Built, Component
from otel_benchlab.config import attribution_delay_s
from otel_benchlab.counters import AgentCounters
from otel_benchlab.exporters.otlp_forward import OtlpForwarder
from otel_benchlab.processors.genai import REQUEST_ATTRIBUTES, GenAIConfig, RequestSpans
from otel_benchlab.records import SensorInfo, StageMark, StageSpan
from otel_benchlab.settings import ConfigError, parse_bind
from otel_benchlab.timebase import TimeBase

if TYPE_CHECKING:
    from otel_benchlab.config import Config

from . import Emit
from .otlp_enricher import IntakeEnricher, attribute_frame, attribute_text, attribute_values


@dataclass
class IntakeConfig:
    # OTLP intake: "" = off; HOST:PORT (a port alone is loopback).
    otlp_grpc: str = ""
    # OTLP/HTTP intake, as otlp_grpc
    otlp_http: str = ""
    # Incoming spans whose name matches one of these (names or globs) become stage spans.
    span_stages: list[str] = field(default_factory=list)
    # Incoming span events with these names become stage marks.
    event_stages: list[str] = field(default_factory=list)
    frame_attribute: str = "benchlab.frame"  # where a span or event carries its frame id
    forward_queue: int = 2048  # OTLP requests held for upstream; more are dropped, counted
    # How late a mark or span may arrive after its own time (a sender's batching and
    # retries: the OTel SDK's batch processor waits 5 s, then retries with back-off) and
    # still get its energy: the power history is kept this much longer than the pairing
    # window. Later ones are kept without energy and counted (benchlab.agent.input.late).
    max_delay_s: float = 60.0


log = logging.getLogger("otel_benchlab")

REQUESTS = {"traces": trace_service_pb2.ExportTraceServiceRequest,
            "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
            "logs": logs_service_pb2.ExportLogsServiceRequest}
RESPONSES = {"traces": trace_service_pb2.ExportTraceServiceResponse,
             "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
             "logs": logs_service_pb2.ExportLogsServiceResponse}
INCOMPLETE = {
    "no_tokens": "an LLM request span without gen_ai.usage token counts is measured "
                 "without per-token figures; send gen_ai.usage.input_tokens/output_tokens "
                 "(or prompt_tokens/completion_tokens)",
    "bad_phases": "an LLM request span's gen_ai.latency times do not fit inside it; it is "
                  "measured as one phase",
    "no_phases": "an LLM request span without gen_ai.latency.time_in_queue and "
                 "time_in_model_prefill (or time_to_first_token) is measured as one phase"}
MAX_MESSAGE = 32 << 20
GUNZIP_PIECE = 1 << 20  # bytes unpacked at a time


@functools.lru_cache(maxsize=4096)  # bounded: span names come from outside
def stage_names(name: str) -> tuple[str, str]:
    """A measured span's two stage names, made once a span name: spans wait seconds for
    their energy, and two new strings a span were ~120 B of each at a flood."""
    return f"{name}.start", f"{name}.end"


def gunzip_capped(data: bytes, cap: int) -> bytes | None:
    """A gzip body unpacked, or None once it unpacks past ``cap`` bytes: a piece at a time,
    so a small compressed body that unpacks to gigabytes (a bomb) costs at most ``cap``
    bytes of memory before it is refused. Members one after another are one body, as
    ``gzip.decompress`` reads them; a torn or corrupt body raises (zlib.error, EOFError)."""
    out: list[bytes] = []
    size = 0
    while data:
        unpack = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while True:  # until the member ends, or neither input nor output is left
            piece = unpack.decompress(data, min(GUNZIP_PIECE, cap - size + 1))
            size += len(piece)
            if size > cap:
                return None
            out.append(piece)
            data = unpack.unconsumed_tail
            if unpack.eof or not (data or piece):
                break
        if not unpack.eof:
            raise EOFError("the gzip body ends before its end of stream")
        data = unpack.unused_data
    return b"".join(out)


class OtlpIntakeReceiver(trace_service_pb2_grpc.TraceServiceServicer,
                         metrics_service_pb2_grpc.MetricsServiceServicer,
                         logs_service_pb2_grpc.LogsServiceServicer):
    name = "otlp_intake"
    input_source = "otlp"  # the label its counts carry (input.rejected, input.late)

    def __init__(self, cfg: IntakeConfig, counters: AgentCounters, forwarder: OtlpForwarder,
                 enricher: IntakeEnricher, timebase: TimeBase | None = None,
                 requests: RequestSpans | None = None) -> None:
        self.cfg = cfg
        self.requests = requests or RequestSpans(GenAIConfig())
        self.counters = counters
        self.forwarder = forwarder
        self.enricher = enricher
        self.timebase = timebase or TimeBase.measure()
        self.exact = {p for p in cfg.span_stages if not any(c in p for c in "*?[")}
        self.globs = [p for p in cfg.span_stages if p not in self.exact]
        self.events = set(cfg.event_stages)
        self._emit: Emit | None = None
        self._grpc: grpc.Server | None = None
        self._http: BoundedHTTPServer | None = None
        for reason in ("not_protobuf", "bad_time", "too_large"):
            counters.declare("input.rejected", source="otlp", reason=reason)
        for reason in INCOMPLETE:
            counters.declare("genai.incomplete", reason=reason)

    def sensors(self) -> list[SensorInfo]:
        return []

    def identities(self) -> list[dict]:
        return [{"otlp_grpc": self.cfg.otlp_grpc, "otlp_http": self.cfg.otlp_http,
                 "upstream": self.forwarder.endpoints}]

    # -- measuring ---------------------------------------------------------------------
    def _matches(self, name: str) -> bool:
        return name in self.exact or any(fnmatch.fnmatchcase(name, g) for g in self.globs)

    def _reject(self, reason: str, what: str) -> None:
        self.counters.add("input.rejected", 1, what, source="otlp", reason=reason)

    def take_traces(self, request: Any) -> bool:
        """Measure what matches, then hold or forward; False when the forward queue is
        full (the caller answers 'retry later')."""
        emit = self._emit
        held: list[tuple[tuple[int, int], Any]] = []
        records: list[StageSpan | StageMark] = []
        to_mono = self.timebase.to_mono_ns
        fkey = self.cfg.frame_attribute
        for rs in request.resource_spans:
            pipeline = attribute_text(rs.resource.attributes, "service.name", "otlp")
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    if self.requests.matches(sp.name):
                        self._llm_request(sp, pipeline, records, held)
                        continue
                    measured = self._matches(sp.name)
                    if not measured and not (self.events and sp.events):
                        continue
                    stream = attribute_text(sp.attributes, "benchlab.stream", "main")
                    frame = attribute_frame(sp.attributes, fkey)
                    if measured:
                        if not sp.start_time_unix_nano or \
                                sp.end_time_unix_nano < sp.start_time_unix_nano:
                            self._reject("bad_time", f"span {sp.name!r} has no start or ends "
                                         "before it starts; it is forwarded, not measured")
                        else:
                            tid = int.from_bytes(sp.trace_id, "big")
                            sid = int.from_bytes(sp.span_id, "big")
                            records.append(StageSpan(
                                pipeline, stream, frame, *stage_names(sp.name),
                                to_mono(sp.start_time_unix_nano),
                                to_mono(sp.end_time_unix_nano), tid, sid, foreign=True))
                            held.append(((tid, sid), sp))
                    for ev in sp.events:
                        if ev.name in self.events:
                            f = attribute_frame(ev.attributes, fkey)
                            records.append(StageMark(to_mono(ev.time_unix_nano), pipeline,
                                                     stream, ev.name,
                                                     f if f is not None else frame))
        if emit is not None:
            for r in records:
                if not emit(r) and isinstance(r, StageSpan):
                    held = [h for h in held if h[0] != (r.trace_id, r.span_id)]
        # With no trace exporter nothing goes upstream: nothing to hold for its power.
        if held and self.forwarder.takes("traces") and self.enricher.hold(request, held):
            return True
        return self.forwarder.forward("traces", request)

    def _llm_request(self, sp: Any, service: str, records: list, held: list) -> None:
        """An LLM request span: its phases and itself, measured (``processors.genai``)."""
        if not sp.start_time_unix_nano or sp.end_time_unix_nano < sp.start_time_unix_nano:
            self._reject("bad_time", f"span {sp.name!r} has no start or ends before it "
                         "starts; it is forwarded, not measured")
            return
        tid = int.from_bytes(sp.trace_id, "big")
        sid = int.from_bytes(sp.span_id, "big")
        problems: list[str] = []
        records += self.requests.phases(
            attribute_values(sp.attributes, REQUEST_ATTRIBUTES), service,
            self.timebase.to_mono_ns(sp.start_time_unix_nano),
            self.timebase.to_mono_ns(sp.end_time_unix_nano), tid, sid, problems)
        for reason in problems:
            self.counters.add("genai.incomplete", 1, INCOMPLETE[reason], reason=reason)
        held.append(((tid, sid), sp))

    # -- gRPC ----------------------------------------------------------------------------
    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            signal, ok = "traces", self.take_traces(request)
        else:
            signal = ("metrics" if isinstance(request,
                                              metrics_service_pb2.ExportMetricsServiceRequest)
                      else "logs")
            ok = self.forwarder.forward(signal, request)
        if not ok:
            context.abort(grpc.StatusCode.UNAVAILABLE, "otel-benchlab's forward queue is "
                          "full; retry later")
        return RESPONSES[signal]()

    # -- HTTP ----------------------------------------------------------------------------
    def _http_handler(self) -> type[BoundedRequestHandler]:
        intake = self

        class Handler(BoundedRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, code: int, body: bytes = b"",
                        ctype: str = "application/x-protobuf") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if code == 503:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

            def _too_large(self, what: str) -> None:
                intake._reject("too_large", f"{what} past the intake's limit of "
                               f"{MAX_MESSAGE >> 20} MiB was refused with 413 (the OTel "
                               "SDK's batches are far smaller: is the sender batching "
                               "without a bound?)")
                self._answer(413, b"request body too large", "text/plain")

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                signal = {"/v1/traces": "traces", "/v1/metrics": "metrics",
                          "/v1/logs": "logs"}.get(self.path.split("?")[0])
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_MESSAGE:
                    self.close_connection = True  # the body is left unread
                    self._too_large(f"a body of {length} bytes")
                    return
                body = self.read_body(length) if length > 0 else b""
                if signal is None:
                    self._answer(404, b"use /v1/traces, /v1/metrics or /v1/logs", "text/plain")
                    return
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/x-protobuf":
                    self._answer(415, b"otel-benchlab's intake takes protobuf bodies "
                                 b"(OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)", "text/plain")
                    return
                try:
                    if self.headers.get("Content-Encoding", "").lower() == "gzip":
                        body = gunzip_capped(body, MAX_MESSAGE)
                        if body is None:
                            self._too_large("a gzip body that unpacks")
                            return
                    request = REQUESTS[signal].FromString(body)
                except Exception:
                    intake._reject("not_protobuf", "an OTLP/HTTP body was not an OTLP "
                                   "protobuf message; answered 400")
                    self._answer(400, b"not an OTLP protobuf message", "text/plain")
                    return
                ok = (intake.take_traces(request) if signal == "traces" else
                      intake.forwarder.forward(signal, request))
                if not ok:
                    self._answer(503, b"forward queue full; retry later", "text/plain")
                    return
                self._answer(200, RESPONSES[signal]().SerializeToString())

        return Handler

    # -- running -------------------------------------------------------------------------
    def start(self, emit: Emit) -> None:
        self._emit = emit
        if self.cfg.otlp_grpc:
            host, port = parse_bind(self.cfg.otlp_grpc, "intake.otlp_grpc")  # type: ignore
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix=
                                                            "otlp-intake"),
                                 options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, server)
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, server)
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                server.add_insecure_port(target)
            except RuntimeError as exc:
                log.error("OTLP intake: cannot listen on %s (%s); applications cannot send "
                          "to this agent over gRPC", target, exc)
            else:
                server.start()
                self._grpc = server
        if self.cfg.otlp_http:
            host, port = parse_bind(self.cfg.otlp_http, "intake.otlp_http")  # type: ignore
            try:
                self._http = BoundedHTTPServer((host, port), self._http_handler())
            except OSError as exc:
                log.error("OTLP intake: cannot listen on %s:%s (%s); applications cannot "
                          "send to this agent over HTTP", host, port, exc.strerror or exc)
            else:
                threading.Thread(target=self._http.serve_forever, name="otlp-intake-http",
                                 daemon=True).start()

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait(2)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}


def _host_port(endpoint: str) -> tuple[str, int | None]:
    text = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]").lower(), int(port)
    except ValueError:
        return text.lower(), None


def refuse_loop(intake: IntakeConfig, upstream: dict[str, str]) -> None:
    """An intake address that is the agent's own export endpoint would send every span
    round in a circle."""
    me = {socket.gethostname().lower(), *LOCAL_HOSTS}
    for key in ("otlp_grpc", "otlp_http"):
        bind = getattr(intake, key)
        if not bind:
            continue
        host, port = parse_bind(bind, f"intake.{key}")  # type: ignore[misc]
        for signal, endpoint in upstream.items():
            up_host, up_port = _host_port(endpoint)
            same_host = up_host == host or (up_host in me and (host in me or
                                                               host.startswith("127.")))
            if up_port == port and same_host:
                raise ConfigError(
                    f"setting 'intake.{key}' ({bind}) is the agent's own OTLP export "
                    f"endpoint for {signal} ({endpoint}): what it receives would be sent back "
                    "to itself. Point OTEL_EXPORTER_OTLP_ENDPOINT at your collector, or "
                    "listen on another port (4317 and 4318 are the usual ones for an intake "
                    "that stands in for a node's collector).")


def build(cfg: Config, ctx: BuildContext) -> Built:
    forwarder = OtlpForwarder(cfg.otlp, ctx.counters, os.environ, cfg.intake.forward_queue)
    try:
        refuse_loop(cfg.intake, forwarder.endpoints)
    except ConfigError:
        forwarder.shutdown(0.0)
        raise
    # Spans come back with their power once their energy has been shared out too.
    hold_s = cfg.pair_window_s + cfg.power_max_gap_s + 3.0 + attribution_delay_s(cfg)
    pods = ctx.shared.get("podresources")
    enricher = IntakeEnricher(forwarder, hold_s, cfg.intake.forward_queue,
                              pods.devices_of if pods is not None else None)
    receiver = OtlpIntakeReceiver(cfg.intake, ctx.counters, forwarder, enricher,
                                  ctx.timebase, RequestSpans(cfg.genai))
    return Built(receivers=[receiver], span_sinks=[enricher])


def validate(intake: IntakeConfig) -> None:
    for key in ("otlp_grpc", "otlp_http"):
        parse_bind(getattr(intake, key), f"intake.{key}")


COMPONENT = Component("otlp_intake", "intake",
                      lambda cfg: bool(cfg.intake.otlp_grpc or cfg.intake.otlp_http), build,
                      settings=IntakeConfig,
                      ranges={"forward_queue": (1, 1_000_000), "max_delay_s": (0.0, 3600)},
                      validate=validate)
