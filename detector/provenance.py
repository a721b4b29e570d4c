"""What a photo or video says about itself: content credentials (C2PA) and metadata, offline.

Usage::

    from detector.provenance import read_provenance

    prov = read_provenance("photo.jpg")
    prov.summary    # "signed by Acme as AI-generated (trainedAlgorithmicMedia), signature valid ..."
    prov.label      # short text for a table column: "C2PA: AI", "camera", "none", ...
    prov.to_json()  # plain dict for ``scan --json`` and the API

This is evidence *beside* the model's score, never mixed into it: a signature or a camera tag can
be stripped or forged, and its absence proves nothing, so the summary says what the file claims
and how far that claim holds, in plain words. The pixels are never decoded: PIL reads headers,
PyAV reads container tags, and c2pa-python checks the manifest's signature and hashes (which
reads a signed file's bytes once, without decoding them).

Nothing here touches the network: remote manifests and OCSP are switched off. Without a trust
list, a well-formed signature from an unknown signer reads as ``"untrusted"``; pass
``trust_anchors`` (PEM text) to have signers chaining to those roots read as ``"valid"``.
``read_provenance`` never raises on odd input: what cannot be read is left empty and explained
in ``notes``.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
from PIL import Image, IptcImagePlugin

from .media import sniff

ValidationState = Literal["valid", "untrusted", "invalid", "unreadable"]

IPTC_SOURCE_TYPE_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC digital source types that mean a trained model made all or part of the content.
AI_SOURCE_TYPES = {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
# Source types that state a capture (or a scan of one) rather than a synthesis.
CAPTURE_SOURCE_TYPES = {
    "digitalCapture",
    "computationalCapture",
    "negativeFilm",
    "positiveFilm",
    "print",
    "screenCapture",
}

# Name of a generator, and a pattern for it in free text (Software, CreatorTool, comments...).
# Word boundaries keep "Flux" from matching "Influx"; ambiguous names need a suffix ("Leonardo.Ai").
_GENERATOR_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in [
        ("Stable Diffusion", r"\bstable[\s_-]?diffusion\b|\bSDXL\b|\bdreamstudio\b"),
        ("Automatic1111", r"\bautomatic1111\b|\bA1111\b|stable-diffusion-webui"),
        ("ComfyUI", r"\bcomfy\s?ui\b"),
        ("DALL-E", r"\bdall[\s·.-]?e\b"),
        ("Midjourney", r"\bmid[\s-]?journey\b"),
        ("Adobe Firefly", r"\bfirefly\b"),
        ("Imagen", r"\bimagen\s?\d*\b"),
        ("Flux", r"\bflux(\.1)?\b"),
        ("NovelAI", r"\bnovel\s?ai\b"),
        ("InvokeAI", r"\binvoke\s?ai\b"),
        ("Fooocus", r"\bfooocus\b"),
        ("Leonardo.Ai", r"\bleonardo[\s.]?ai\b"),
        ("Ideogram", r"\bideogram\b"),
        ("Runway", r"\brunway(ml)?\b"),
        ("Sora", r"\bsora\b"),
        ("Gemini", r"\bgemini\b"),
        ("Google AI", r"\bgoogle\s+ai\b"),
        ("Veo", r"\bveo\s?\d*\b"),
        ("Kling", r"\bkling\b"),
        ("Pika", r"\bpika(\s?labs)?\b"),
        ("ChatGPT", r"\bchat\s?gpt\b|\bgpt-?4o\b"),
        ("OpenAI", r"\bopen\s?ai\b"),
        ("Bing Image Creator", r"\bbing image creator\b"),
    ]
]

# PNG text chunks that image generators write and nothing else does: their presence is a strong hint.
_GENERATOR_CHUNKS = {
    "parameters": "Automatic1111",
    "prompt": "ComfyUI",
    "workflow": "ComfyUI",
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "dream": "InvokeAI",
    "fooocus_scheme": "Fooocus",
}

# Editing software: a camera photo that passed through these is no longer a camera original.
_EDITOR_PATTERN = re.compile(
    r"photoshop|lightroom|\bgimp\b|affinity|snapseed|pixelmator|capture one|darktable|rawtherapee|"
    r"paint\.net|\bcanva\b|picsart|facetune|\bvsco\b|luminar|\bdxo\b|acdsee|photopea|\bfotor\b|"
    r"photoscape|\bpicasa\b|imagemagick|graphicsmagick|\bpillow\b|\bpython\b",
    re.IGNORECASE,
)

# Encoders of tools that rewrite or edit video; a phone or camera writes its own muxer name.
_VIDEO_TOOL_PATTERN = re.compile(
    r"^lavf|ffmpeg|handbrake|premiere|davinci|final cut|imovie|capcut|after effects|shotcut|kdenlive|"
    r"openshot|vegas|filmora",
    re.IGNORECASE,
)

# Container tags that every muxer writes: they say nothing about where a video came from.
_TECHNICAL_VIDEO_TAGS = {"major_brand", "minor_version", "compatible_brands", "handler_name", "vendor_id"}
_LOCATION_TAG = re.compile(r"location|gps|iso6709", re.IGNORECASE)

_MAX_TEXT = 300  # longest excerpt of a metadata value we keep in the result
_MAX_TAGS = 40


@dataclass
class C2paInfo:
    """The active C2PA manifest: who signed, what it claims, and whether the claim holds."""

    present: bool = True
    # valid: intact and signed by a trusted signer; untrusted: intact, signer on no trust list we
    # know; invalid: the signature or a hash fails (tampered, damaged, expired or revoked);
    # unreadable: a manifest is there but cannot be parsed.
    validation_state: ValidationState = "unreadable"
    sdk_validation_state: str | None = None
    validation_errors: list[str] = field(default_factory=list)
    signer: str | None = None
    signer_common_name: str | None = None
    signed_at: str | None = None
    claim_generator: str | None = None
    title: str | None = None
    actions: list[str] = field(default_factory=list)
    software_agents: list[str] = field(default_factory=list)
    digital_source_type: str | None = None
    ai_generated: bool | None = None
    manifest_count: int = 0


@dataclass
class ImageMetadata:
    """Hints from EXIF, XMP, IPTC and PNG text. Location is only flagged, never copied out."""

    make: str | None = None
    model: str | None = None
    capture_time: str | None = None
    modify_time: str | None = None
    software: str | None = None
    creator_tool: str | None = None
    originating_program: str | None = None
    lens: str | None = None
    has_gps: bool = False
    digital_source_type: str | None = None
    editing_software: str | None = None
    text_chunks: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass
class VideoMetadata:
    """Container tags of a video: who wrote the file and when it says it was made."""

    container: str | None = None
    encoder: str | None = None
    creation_time: str | None = None
    make: str | None = None
    model: str | None = None
    software: str | None = None
    stream_encoders: list[str] = field(default_factory=list)
    handler_names: list[str] = field(default_factory=list)
    has_location: bool = False
    # Set when the encoder is a tool that rewrites files (FFmpeg, an editor), not a camera's own.
    editing_software: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Provenance:
    """What the file says about itself, kept apart from what the model says about its pixels."""

    kind: Literal["image", "video", "unknown"] = "unknown"
    format: str | None = None
    c2pa: C2paInfo | None = None
    exif: ImageMetadata | None = None
    video: VideoMetadata | None = None
    # Unsigned hints, each "Name (where it was found)": evidence anyone could add or remove.
    generator_hints: list[str] = field(default_factory=list)
    metadata_stripped: bool = True
    # A few words for a table column: "C2PA: AI", "C2PA: AI (untrusted)", "C2PA: capture", "C2PA",
    # "C2PA invalid", "AI hint", "camera", "camera, edited", "metadata only" or "none".
    label: str = "none"
    summary: str = ""
    # What could not be read and why; empty when everything was examined.
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_provenance(path: str | Path, *, trust_anchors: str | None = None) -> Provenance:
    """Read content credentials and metadata of one file; never raises on what the file holds.

    ``trust_anchors`` is a PEM bundle of root certificates whose signers count as trusted (for
    example the C2PA trust list, saved locally); without it no signer can read as "valid".
    """
    path = Path(path)
    prov = Provenance()
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        prov.notes.append(f"the file could not be read: {exc.strerror or exc}")
        _conclude(prov)
        return prov
    media = sniff(head)
    if media is not None:
        prov.kind, prov.format = media.kind, media.format
    else:
        prov.notes.append("not an image or video format we read; metadata not examined")

    try:
        prov.c2pa = _read_c2pa(path, prov.format, trust_anchors, prov.notes)
        if prov.kind == "image":
            prov.exif = _read_image_metadata(path, prov.notes, prov.generator_hints)
        elif prov.kind == "video":
            prov.video = _read_video_metadata(path, prov.notes, prov.generator_hints)
    except Exception as exc:  # last resort: a hostile file must cost its provenance, not the scan
        prov.notes.append(f"provenance only partly read: {_clip(repr(exc))}")
    prov.generator_hints = list(dict.fromkeys(prov.generator_hints))
    prov.metadata_stripped = _is_stripped(prov)
    _conclude(prov)
    return prov


# --- C2PA -------------------------------------------------------------------------------------

_C2PA_FORMATS = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "mp4": "video/mp4",
    "avi": "video/x-msvideo",
}


def _read_c2pa(path: Path, fmt: str | None, trust_anchors: str | None, notes: list[str]) -> C2paInfo | None:
    """The active manifest and its validation, or None when the file carries no manifest."""
    mime = _C2PA_FORMATS.get(fmt or "")
    if mime is None:
        return None
    try:
        import c2pa
    except Exception as exc:  # a missing or broken native library must not stop a scan
        notes.append(f"content credentials not checked: c2pa-python unavailable ({exc})")
        return None

    # Offline by design: no manifest fetched from a URL, no revocation check over OCSP.
    config: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        config["trust"] = {"trust_anchors": trust_anchors}
    try:
        with c2pa.Context.from_dict(config) as context, path.open("rb") as stream:
            reader = c2pa.Reader.try_create(mime, stream, context=context)
            if reader is None:
                return None
            with reader:
                store = json.loads(reader.json())
    except Exception as exc:
        message = _clip(str(exc))
        if _has_jumbf(path):
            notes.append(f"content credentials present but unreadable: {message}")
            return C2paInfo(validation_state="unreadable", validation_errors=[message])
        notes.append(f"content credentials not checked: {message}")
        return None
    return _c2pa_info(store)


def _has_jumbf(path: Path) -> bool:
    """Whether the bytes hold a C2PA JUMBF box at all, so a broken one is not taken for none."""
    try:
        with path.open("rb") as fh:
            data = fh.read(64 * 1024 * 1024)
    except OSError:
        return False
    return b"jumb" in data and b"c2pa" in data


def _c2pa_info(store: dict[str, Any]) -> C2paInfo:
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest") or "") or {}
    info = C2paInfo(manifest_count=len(manifests))
    info.sdk_validation_state = store.get("validation_state")

    failures = store.get("validation_status")
    if failures is None:
        failures = ((store.get("validation_results") or {}).get("activeManifest") or {}).get("failure")
    codes = [f.get("code", "") for f in failures or [] if isinstance(f, dict)]
    info.validation_errors = [
        _clip(f"{f.get('code', '?')}: {f.get('explanation', '')}".rstrip(": "))
        for f in failures or []
        if isinstance(f, dict) and f.get("code") != "signingCredential.untrusted"
    ]
    sdk_state = (info.sdk_validation_state or "").lower()
    if sdk_state == "trusted":
        info.validation_state = "valid"
    elif sdk_state == "invalid" or info.validation_errors:
        info.validation_state = "invalid"
    elif "signingCredential.untrusted" in codes:
        info.validation_state = "untrusted"
    elif sdk_state == "valid":
        info.validation_state = "valid"
    else:
        info.validation_state = "invalid" if codes else "unreadable"

    signature = active.get("signature_info") or {}
    info.signer = _text(signature.get("issuer")) or _text(signature.get("common_name"))
    info.signer_common_name = _text(signature.get("common_name"))
    info.signed_at = _text(signature.get("time"))
    info.title = _text(active.get("title"))
    info.claim_generator = _claim_generator(active)

    for assertion in active.get("assertions") or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            name = _text(action.get("action"))
            if name:
                info.actions.append(name)
            agent = action.get("softwareAgent")
            agent_name = _text(agent.get("name") if isinstance(agent, dict) else agent)
            if agent_name:
                info.software_agents.append(agent_name)
            source = _text(action.get("digitalSourceType"))
            if source and (info.digital_source_type is None or _source_name(source) in AI_SOURCE_TYPES):
                info.digital_source_type = source
    info.software_agents = list(dict.fromkeys(info.software_agents))
    info.ai_generated = _is_ai_source(info.digital_source_type)
    return info


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    generators = manifest.get("claim_generator_info")
    if isinstance(generators, list) and generators and isinstance(generators[0], dict):
        name, version = _text(generators[0].get("name")), _text(generators[0].get("version"))
        if name:
            return f"{name} {version}" if version else name
    return _text(manifest.get("claim_generator"))


# --- Images: EXIF, XMP, IPTC, PNG text ------------------------------------------------------

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_XMP_FIELDS = ("CreatorTool", "DigitalSourceType", "softwareAgent", "Make", "Model", "DateTimeOriginal")


def _read_image_metadata(path: Path, notes: list[str], hints: list[str]) -> ImageMetadata | None:
    """Header-only read with PIL: ``Image.open`` parses markers and chunks, not pixel data."""
    meta = ImageMetadata()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                image_format = img.format
                info = dict(img.info)
                exif = img.getexif() if img.format == "TIFF" else Image.Exif()
                if img.format != "TIFF" and info.get("exif"):
                    exif.load(info["exif"])
                iptc = IptcImagePlugin.getiptcinfo(img) if img.format == "JPEG" else None
                xmp = info.get("xmp") or (exif.get(700) if img.format == "TIFF" else None)
    except Exception as exc:
        notes.append(f"image metadata could not be read: {_clip(str(exc))}")
        return None

    if len(exif):
        meta.sources.append("EXIF")
        _read_exif(exif, meta, hints)
    if xmp:
        meta.sources.append("XMP")
        _read_xmp(_decode(xmp), meta, hints)
    if iptc:
        meta.sources.append("IPTC")
        meta.originating_program = _text(_decode(iptc.get((2, 65))))
        for key, label in (((2, 65), "IPTC OriginatingProgram"), ((2, 110), "IPTC Credit")):
            _scan_for_generators(_decode(iptc.get(key)), label, hints)
    comment = info.get("comment")
    if comment:
        meta.sources.append("comment")
        _scan_for_generators(_decode(comment), "file comment", hints)
    if image_format == "PNG":
        _read_png_text(info, meta, hints)
    meta.editing_software = next(
        (
            s
            for s in (meta.software, meta.creator_tool, meta.originating_program)
            if s and _EDITOR_PATTERN.search(s)
        ),
        None,
    )
    if meta.digital_source_type and _is_ai_source(meta.digital_source_type):
        hints.append(f"IPTC digital source type {_source_name(meta.digital_source_type)} (XMP)")
    return meta


def _read_exif(exif: Any, meta: ImageMetadata, hints: list[str]) -> None:
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    try:
        meta.has_gps = bool(exif.get_ifd(_GPS_IFD))
    except Exception:
        meta.has_gps = _GPS_IFD in exif
    meta.make = _text(exif.get(271))
    meta.model = _text(exif.get(272))
    meta.software = _text(exif.get(305))
    meta.modify_time = _text(exif.get(306))
    meta.capture_time = _text(sub.get(36867)) or _text(sub.get(36868))
    meta.lens = _text(sub.get(42036))
    # Artist and Copyright are left out: they name people, and a person called Leonardo is not a model.
    for tag, label in ((305, "EXIF Software"), (270, "EXIF ImageDescription")):
        _scan_for_generators(exif.get(tag), label, hints)
    user_comment = _decode(sub.get(37510))
    _scan_for_generators(user_comment, "EXIF UserComment", hints)
    if re.search(r"\bSteps: \d+.*\bSampler: ", user_comment or "", re.DOTALL):
        hints.append("Automatic1111 (generation parameters in EXIF UserComment)")


def _read_xmp(xmp: str | None, meta: ImageMetadata, hints: list[str]) -> None:
    if not xmp:
        return
    found: dict[str, list[str]] = {}
    for name in _XMP_FIELDS:
        # Attribute form (ns:Name="v") and element form (<ns:Name>v</ns:Name>), any prefix.
        pattern = rf'\b\w+:{name}\s*=\s*"([^"]*)"|<\w+:{name}>([^<]*)</\w+:{name}>'
        found[name] = [(a or b).strip() for a, b in re.findall(pattern, xmp) if (a or b).strip()]
    meta.creator_tool = _text(next(iter(found["CreatorTool"]), None))
    meta.digital_source_type = _text(next(iter(found["DigitalSourceType"]), None))
    meta.make = meta.make or _text(next(iter(found["Make"]), None))
    meta.model = meta.model or _text(next(iter(found["Model"]), None))
    meta.capture_time = meta.capture_time or _text(next(iter(found["DateTimeOriginal"]), None))
    for value in found["CreatorTool"]:
        _scan_for_generators(value, "XMP CreatorTool", hints)
    for value in found["softwareAgent"]:
        _scan_for_generators(value, "XMP history", hints)


def _read_png_text(info: dict[str, Any], meta: ImageMetadata, hints: list[str]) -> None:
    technical = {
        "dpi",
        "gamma",
        "transparency",
        "srgb",
        "chromaticity",
        "icc_profile",
        "aspect",
        "exif",
        "xmp",
    }
    keys = [k for k in info if isinstance(k, str) and k.lower() not in technical and isinstance(info[k], str)]
    meta.text_chunks = keys[:_MAX_TAGS]
    if keys:
        meta.sources.append("PNG text")
    for key in keys:
        generator = _GENERATOR_CHUNKS.get(key.lower())
        if generator:
            hints.append(f"{generator} (PNG '{key}' chunk)")
        elif key.lower() in {"software", "source", "comment", "description", "generator"}:
            if key.lower() == "software":
                meta.software = meta.software or _text(info[key])
            _scan_for_generators(info[key], f"PNG '{key}' chunk", hints)


# --- Videos: container tags -------------------------------------------------------------------


def _read_video_metadata(path: Path, notes: list[str], hints: list[str]) -> VideoMetadata | None:
    """Tags from the container header; ``av.open`` probes streams but decodes no frame."""
    meta = VideoMetadata()
    try:
        with av.open(str(path)) as container:
            meta.container = container.format.name
            tags = {str(k): str(v) for k, v in (container.metadata or {}).items()}
            for stream in container.streams:
                stream_tags = stream.metadata or {}
                if stream_tags.get("encoder"):
                    meta.stream_encoders.append(_clip(str(stream_tags["encoder"])))
                if stream_tags.get("handler_name"):
                    meta.handler_names.append(_clip(str(stream_tags["handler_name"])))
                if not tags.get("creation_time") and stream_tags.get("creation_time"):
                    tags["creation_time"] = str(stream_tags["creation_time"])
    except Exception as exc:
        notes.append(f"video container could not be read: {_clip(str(exc))}")
        return None

    meta.has_location = any(_LOCATION_TAG.search(k) for k in tags)
    meta.tags = {k: _clip(v) for k, v in list(tags.items())[:_MAX_TAGS] if not _LOCATION_TAG.search(k)}
    lower = {k.lower(): v for k, v in tags.items()}

    def first(*keys: str) -> str | None:
        return next((_text(lower[k]) for k in keys if lower.get(k)), None)

    meta.encoder = first("encoder", "encoded_by")
    meta.creation_time = first("creation_time", "com.apple.quicktime.creationdate", "date")
    meta.make = first("com.apple.quicktime.make", "com.android.manufacturer", "make")
    meta.model = first("com.apple.quicktime.model", "com.android.model", "model")
    meta.software = first("com.apple.quicktime.software", "software", "com.android.version")
    tool = next((s for s in (meta.encoder, meta.software) if s and _VIDEO_TOOL_PATTERN.search(s)), None)
    meta.editing_software = _describe_encoder(tool) if tool else None
    for key in (
        "encoder",
        "encoded_by",
        "software",
        "com.apple.quicktime.software",
        "comment",
        "description",
        "title",
    ):
        _scan_for_generators(lower.get(key), f"container '{key}' tag", hints)
    for value in meta.stream_encoders:
        _scan_for_generators(value, "stream encoder tag", hints)
    return meta


# --- Conclusions ------------------------------------------------------------------------------


def _is_stripped(prov: Provenance) -> bool:
    """True when nothing about origin is left: no credentials, no camera, software or time tags."""
    if prov.c2pa is not None:
        return False
    if prov.exif is not None:
        return not prov.exif.sources
    if prov.video is not None:
        video = prov.video
        meaningful = [k for k in video.tags if k.lower() not in _TECHNICAL_VIDEO_TAGS]
        return not (meaningful or video.stream_encoders or video.has_location)
    return True


def _conclude(prov: Provenance) -> None:
    """Set ``summary`` and ``label``: the strongest claim first, each with how far it holds."""
    parts: list[str] = []
    label = "none"
    c2pa, exif, video = prov.c2pa, prov.exif, prov.video
    camera = _camera(prov)

    if c2pa is not None:
        if c2pa.validation_state in ("invalid", "unreadable"):
            reason = c2pa.validation_errors[0] if c2pa.validation_errors else "it cannot be verified"
            what = "invalid" if c2pa.validation_state == "invalid" else "unreadable"
            parts.append(
                f"content credentials {what}: the file was changed after signing or the manifest is "
                f"damaged ({reason}), so its claims cannot be relied on"
            )
            label = "C2PA invalid"
        else:
            signer = c2pa.signer or "an unnamed signer"
            source = _source_name(c2pa.digital_source_type) if c2pa.digital_source_type else None
            if c2pa.ai_generated:
                claim = f"signed by {signer} as AI-generated ({source})"
                label = "C2PA: AI"
            elif source in CAPTURE_SOURCE_TYPES:
                claim = f"signed by {signer} as a capture ({source})"
                label = "C2PA: capture"
            elif source:
                claim = f"signed by {signer} (source type: {source})"
                label = "C2PA"
            else:
                claim = f"signed by {signer}, no source type stated"
                label = "C2PA"
            if c2pa.software_agents:
                claim += f", made with {', '.join(c2pa.software_agents[:2])}"
            if c2pa.validation_state == "untrusted":
                claim += ", signature intact but the signer is on no trust list we hold"
                label += " (untrusted)"
            else:
                claim += ", signature valid and signer trusted"
            parts.append(claim)

    if prov.generator_hints:
        parts.append(
            f"metadata names an AI generator: {', '.join(prov.generator_hints[:4])} "
            "(unsigned metadata can be added or removed by anyone)"
        )
        if label == "none":
            label = "AI hint"

    if camera and not (c2pa and c2pa.ai_generated) and not prov.generator_hints:
        editor = (exif or video).editing_software if (exif or video) else None
        when = _capture_time(prov)
        if editor:
            noun = "camera photo" if prov.kind != "video" else "camera recording"
            parts.append(f"{noun} from {camera}{when}, later edited or rewritten with {editor}")
            if label == "none":
                label = "camera, edited"
        else:
            noun = "camera original" if prov.kind != "video" else "camera recording"
            parts.append(f"{noun} from {camera}{when}, no edits recorded (camera tags can be forged)")
            if label == "none":
                label = "camera"

    if not parts:
        if prov.metadata_stripped:
            if prov.kind == "unknown":
                parts.append("no provenance: not a photo or video we could examine")
            elif exif is None and video is None:
                parts.append("no provenance: the metadata could not be read (damaged or truncated file)")
            else:
                parts.append("no provenance: metadata absent, which proves nothing")
        else:
            parts.append(f"no provenance: {_what_metadata_says(prov)}, naming no camera or generator")
            label = "metadata only"

    if video is not None and video.encoder and not any(video.encoder in part for part in parts):
        parts.append(f"container written by {_describe_encoder(video.encoder)}")
    prov.summary = "; ".join(parts)
    prov.label = label


def _what_metadata_says(prov: Provenance) -> str:
    said: list[str] = []
    if prov.exif is not None:
        if prov.exif.editing_software:
            said.append(f"edited with {prov.exif.editing_software}")
        elif prov.exif.software or prov.exif.creator_tool:
            said.append(f"software {prov.exif.software or prov.exif.creator_tool}")
        if prov.exif.capture_time:
            said.append(f"dated {prov.exif.capture_time}")
        if not said:
            said.append(f"{', '.join(prov.exif.sources)} metadata present")
    if prov.video is not None:
        if prov.video.encoder:
            said.append(f"container written by {_describe_encoder(prov.video.encoder)}")
        if prov.video.creation_time:
            said.append(f"created {prov.video.creation_time}")
        if not said:
            said.append("container tags present")
    return ", ".join(said) or "some metadata present"


def _describe_encoder(encoder: str) -> str:
    # "Lavf60.16.100" means nothing to most readers; it is FFmpeg's muxer.
    return f"{encoder} (FFmpeg)" if encoder.lower().startswith("lavf") else encoder


def _camera(prov: Provenance) -> str | None:
    source = prov.exif or prov.video
    if source is None or not (source.make or source.model):
        return None
    make, model = source.make or "", source.model or ""
    # Cameras often repeat the make in the model ("Canon" / "Canon EOS R5").
    return model if make and model.lower().startswith(make.lower()) else f"{make} {model}".strip()


def _capture_time(prov: Provenance) -> str:
    when = (prov.exif.capture_time if prov.exif else None) or (
        prov.video.creation_time if prov.video else None
    )
    return f", taken {when}" if when else ""


# --- Small helpers ----------------------------------------------------------------------------


def _scan_for_generators(value: Any, where: str, hints: list[str]) -> None:
    text = _decode(value)
    if not text:
        return
    for name, pattern in _GENERATOR_PATTERNS:
        if pattern.search(text):
            hints.append(f"{name} ({where})")


def _source_name(uri: str | None) -> str | None:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture`` -> ``digitalCapture``."""
    if not uri:
        return None
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _is_ai_source(uri: str | None) -> bool | None:
    name = _source_name(uri)
    return None if name is None else name in AI_SOURCE_TYPES


def _decode(value: Any) -> str | None:
    """Metadata arrives as str, bytes (any encoding), lists of bytes (IPTC) or numbers."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return " ".join(filter(None, (_decode(v) for v in value))) or None
    if isinstance(value, bytes):
        # EXIF UserComment starts with an 8-byte charset code; A1111 writes UNICODE (UTF-16 BE).
        if value[:8] == b"UNICODE\x00":
            body = value[8:]
            utf16 = "utf-16-le" if body[1:2] == b"\x00" and body[:1] != b"\x00" else "utf-16-be"
            return body.decode(utf16, errors="replace").strip("\x00 ")
        if value[:8] in (b"ASCII\x00\x00\x00", b"\x00" * 8):
            value = value[8:]
        return value.decode("utf-8", errors="replace").strip("\x00 ")
    return str(value)


def _text(value: Any) -> str | None:
    text = _decode(value)
    text = text.strip() if text else None
    return _clip(text) if text else None


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
