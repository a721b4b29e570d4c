"""Provenance: content credentials signed here with a throwaway CA, and metadata written here.

Every fixture is made in ``tmp_path`` by the test itself: no network, no third-party media.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

from detector.provenance import IPTC_SOURCE_TYPE_PREFIX, read_provenance
from testmedia import write_video

REAL_FACES = Path("/work/shared/data/faces/utkface/real")
AI_SOURCE = IPTC_SOURCE_TYPE_PREFIX + "trainedAlgorithmicMedia"
CAPTURE_SOURCE = IPTC_SOURCE_TYPE_PREFIX + "digitalCapture"


@dataclass(frozen=True)
class SigningChain:
    chain_pem: bytes  # leaf then CA, as c2pa wants it
    key_pem: bytes
    ca_pem: str


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Unmask Test"),
        ]
    )


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    """An ES256 CA and leaf with the key usages C2PA demands (digitalSignature, emailProtection)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Unmask Test CA"))
        .issuer_name(_name("Unmask Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("Unmask Test Signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SigningChain(
        chain_pem=leaf.public_bytes(pem) + ca.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ca_pem=ca.public_bytes(pem).decode(),
    )


def _pixels() -> Image.Image:
    """A real face when the shared data set is here, synthetic pixels otherwise."""
    faces = sorted(REAL_FACES.glob("*.jpg"))[:1] if REAL_FACES.is_dir() else []
    if faces:
        with Image.open(faces[0]) as img:
            return img.convert("RGB").resize((96, 96))
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))


def _jpeg(path: Path, exif: Image.Exif | None = None) -> Path:
    # Saved without exif= so PIL writes a bare JFIF: nothing about origin is left.
    kwargs = {"exif": exif} if exif is not None else {}
    _pixels().save(path, "JPEG", quality=90, **kwargs)
    return path


def _camera_exif(make: str, model: str, software: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[271], exif[272] = make, model
    if software:
        exif[305] = software
    exif[306] = "2023:05:01 10:00:00"
    exif.get_ifd(0x8769)[36867] = "2023:05:01 09:59:58"
    return exif


def _sign(chain: SigningChain, src: Path, dst: Path, source_type: str) -> Path:
    manifest = {
        "claim_generator_info": [{"name": "Unmask tests", "version": "1.0"}],
        "title": dst.name,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": source_type,
                            "softwareAgent": {"name": "Test Model Studio"},
                        }
                    ]
                },
            }
        ],
    }
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.chain_pem, chain.key_pem, None)
    )
    with c2pa.Builder(manifest) as builder, src.open("rb") as source, dst.open("w+b") as dest:
        builder.sign(signer, "image/jpeg", source, dest)
    return dst


@pytest.fixture(scope="module")
def signed_ai(chain: SigningChain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("c2pa")
    return _sign(chain, _jpeg(folder / "plain.jpg"), folder / "signed_ai.jpg", AI_SOURCE)


# --- Content credentials ----------------------------------------------------------------------


def test_signed_ai_image_reads_as_ai_generated_by_an_untrusted_signer(signed_ai: Path) -> None:
    prov = read_provenance(signed_ai)
    info = prov.c2pa
    assert info is not None and info.present
    assert info.validation_state == "untrusted"
    assert info.validation_errors == []
    assert info.signer == "Unmask Test"
    assert info.signer_common_name == "Unmask Test Signer"
    assert info.claim_generator == "Unmask tests 1.0"
    assert info.actions == ["c2pa.created"]
    assert info.software_agents == ["Test Model Studio"]
    assert info.digital_source_type == AI_SOURCE
    assert info.ai_generated is True
    assert prov.label == "C2PA: AI (untrusted)"
    assert prov.summary.startswith("signed by Unmask Test as AI-generated (trainedAlgorithmicMedia)")
    assert "made with Test Model Studio" in prov.summary
    assert "signer is on no trust list" in prov.summary
    assert prov.metadata_stripped is False
    assert prov.kind == "image" and prov.format == "jpeg"


def test_signed_ai_image_is_valid_with_the_test_ca_as_trust_anchor(
    signed_ai: Path, chain: SigningChain
) -> None:
    prov = read_provenance(signed_ai, trust_anchors=chain.ca_pem)
    assert prov.c2pa is not None
    assert prov.c2pa.validation_state == "valid"
    assert prov.c2pa.sdk_validation_state == "Trusted"
    assert prov.label == "C2PA: AI"
    assert "signature valid and signer trusted" in prov.summary


def test_signed_capture_is_not_called_ai(chain: SigningChain, tmp_path: Path) -> None:
    signed = _sign(chain, _jpeg(tmp_path / "plain.jpg"), tmp_path / "capture.jpg", CAPTURE_SOURCE)
    prov = read_provenance(signed, trust_anchors=chain.ca_pem)
    assert prov.c2pa is not None and prov.c2pa.ai_generated is False
    assert prov.label == "C2PA: capture"
    assert prov.summary.startswith("signed by Unmask Test as a capture (digitalCapture)")


def test_pixels_changed_after_signing_make_the_credentials_invalid(signed_ai: Path, tmp_path: Path) -> None:
    data = bytearray(signed_ai.read_bytes())
    scan = data.rfind(b"\xff\xda")  # start of the last scan: compressed pixels follow
    for i in range(scan + 200, scan + 240):
        data[i] ^= 0x55
    tampered = tmp_path / "tampered.jpg"
    tampered.write_bytes(bytes(data))

    prov = read_provenance(tampered)
    assert prov.c2pa is not None
    assert prov.c2pa.validation_state == "invalid"
    assert any(e.startswith("assertion.dataHash.mismatch") for e in prov.c2pa.validation_errors)
    assert prov.label == "C2PA invalid"
    assert prov.summary.startswith("content credentials invalid: the file was changed after signing")
    assert "AI-generated" not in prov.summary  # claims of a broken manifest are not repeated as fact


def test_edited_manifest_makes_the_credentials_invalid(signed_ai: Path, tmp_path: Path) -> None:
    data = signed_ai.read_bytes()
    assert data.count(b"Test Model Studio") == 1
    tampered = tmp_path / "manifest_tampered.jpg"
    tampered.write_bytes(data.replace(b"Test Model Studio", b"Real Camera Corp."))

    prov = read_provenance(tampered)
    assert prov.c2pa is not None
    assert prov.c2pa.validation_state == "invalid"
    assert any(e.startswith("assertion.hashedURI.mismatch") for e in prov.c2pa.validation_errors)
    assert prov.label == "C2PA invalid"


def test_broken_signature_box_is_shown_as_unreadable_credentials(signed_ai: Path, tmp_path: Path) -> None:
    data = bytearray(signed_ai.read_bytes())
    box = data.rfind(b"c2pa.signature")
    for i in range(box + 100, box + 140):
        data[i] ^= 0xFF
    broken = tmp_path / "broken_signature.jpg"
    broken.write_bytes(bytes(data))

    prov = read_provenance(broken)
    assert prov.c2pa is not None and prov.c2pa.present
    assert prov.c2pa.validation_state in ("unreadable", "invalid")
    assert prov.label == "C2PA invalid"
    assert prov.summary.startswith("content credentials")
    assert "cannot be relied on" in prov.summary


# --- Image metadata ---------------------------------------------------------------------------


def test_camera_exif_reads_as_a_camera_original(tmp_path: Path) -> None:
    photo = _jpeg(tmp_path / "camera.jpg", _camera_exif("Canon", "Canon EOS R5", "Firmware Version 1.1.0"))
    prov = read_provenance(photo)
    assert prov.c2pa is None
    assert prov.exif is not None
    assert (prov.exif.make, prov.exif.model) == ("Canon", "Canon EOS R5")
    assert prov.exif.capture_time == "2023:05:01 09:59:58"
    assert prov.exif.software == "Firmware Version 1.1.0"
    assert prov.exif.editing_software is None
    assert prov.generator_hints == []
    assert prov.metadata_stripped is False
    assert prov.label == "camera"
    assert prov.summary.startswith(
        "camera original from Canon EOS R5, taken 2023:05:01 09:59:58, no edits recorded"
    )


def test_camera_photo_saved_by_an_editor_is_not_an_original(tmp_path: Path) -> None:
    photo = _jpeg(
        tmp_path / "edited.jpg", _camera_exif("NIKON CORPORATION", "Z 6", "Adobe Photoshop 25.0 (Windows)")
    )
    prov = read_provenance(photo)
    assert prov.exif is not None and prov.exif.editing_software == "Adobe Photoshop 25.0 (Windows)"
    assert prov.label == "camera, edited"
    assert "camera photo from NIKON CORPORATION Z 6" in prov.summary
    assert "edited or rewritten with Adobe Photoshop 25.0 (Windows)" in prov.summary


def test_stripped_image_says_absence_proves_nothing(tmp_path: Path) -> None:
    prov = read_provenance(_jpeg(tmp_path / "stripped.jpg"))
    assert prov.c2pa is None
    assert prov.exif is not None and prov.exif.sources == []
    assert prov.metadata_stripped is True
    assert prov.generator_hints == []
    assert prov.label == "none"
    assert prov.summary == "no provenance: metadata absent, which proves nothing"


@pytest.mark.parametrize(
    ("software", "generator"),
    [
        ("Midjourney v6", "Midjourney"),
        ("DALL-E 3", "DALL-E"),
        ("Adobe Firefly Image 3", "Adobe Firefly"),
        ("FLUX.1-dev", "Flux"),
        ("ComfyUI", "ComfyUI"),
    ],
)
def test_generator_name_in_software_is_a_hint(tmp_path: Path, software: str, generator: str) -> None:
    exif = Image.Exif()
    exif[305] = software
    prov = read_provenance(_jpeg(tmp_path / "generated.jpg", exif))
    assert prov.exif is not None and prov.exif.software == software
    assert prov.generator_hints == [f"{generator} (EXIF Software)"]
    assert prov.label == "AI hint"
    assert prov.summary.startswith(f"metadata names an AI generator: {generator} (EXIF Software)")
    assert "can be added or removed by anyone" in prov.summary


def test_ordinary_software_names_no_generator(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[305] = "Influx Photo Manager 2.1"  # contains "flux" but is not Flux
    prov = read_provenance(_jpeg(tmp_path / "ordinary.jpg", exif))
    assert prov.generator_hints == []
    assert prov.label == "metadata only"
    assert prov.summary == ("no provenance: software Influx Photo Manager 2.1, naming no camera or generator")


def test_png_with_a1111_parameters_chunk_is_a_strong_hint(tmp_path: Path) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a portrait photo\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    path = tmp_path / "a1111.png"
    _pixels().save(path, "PNG", pnginfo=text)

    prov = read_provenance(path)
    assert prov.format == "png"
    assert prov.exif is not None and prov.exif.text_chunks == ["parameters"]
    assert prov.generator_hints == ["Automatic1111 (PNG 'parameters' chunk)"]
    assert prov.label == "AI hint"
    assert prov.summary.startswith("metadata names an AI generator: Automatic1111 (PNG 'parameters' chunk)")


def test_png_software_chunk_names_a_generator(tmp_path: Path) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_itxt("Software", "DALL·E 3 by OpenAI")  # iTXt: UTF-8, unlike EXIF ASCII
    path = tmp_path / "dalle.png"
    _pixels().save(path, "PNG", pnginfo=text)

    prov = read_provenance(path)
    assert prov.exif is not None and prov.exif.software == "DALL·E 3 by OpenAI"
    assert prov.generator_hints == ["DALL-E (PNG 'Software' chunk)", "OpenAI (PNG 'Software' chunk)"]


def test_png_with_comfyui_workflow_chunks(tmp_path: Path) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("prompt", json.dumps({"3": {"class_type": "KSampler"}}))
    text.add_text("workflow", json.dumps({"nodes": []}))
    path = tmp_path / "comfy.png"
    _pixels().save(path, "PNG", pnginfo=text)

    prov = read_provenance(path)
    assert prov.generator_hints == ["ComfyUI (PNG 'prompt' chunk)", "ComfyUI (PNG 'workflow' chunk)"]


def test_a1111_parameters_in_jpeg_user_comment(tmp_path: Path) -> None:
    exif = Image.Exif()
    params = "a portrait\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 42, Model: sd_xl_base_1.0"
    exif.get_ifd(0x8769)[37510] = b"UNICODE\x00" + params.encode("utf-16-be")
    prov = read_provenance(_jpeg(tmp_path / "a1111.jpg", exif))
    assert "Automatic1111 (generation parameters in EXIF UserComment)" in prov.generator_hints
    assert prov.label == "AI hint"


def test_xmp_digital_source_type_without_credentials(tmp_path: Path) -> None:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="Some Tool" '
        f'Iptc4xmpExt:DigitalSourceType="{AI_SOURCE}"/></rdf:RDF></x:xmpmeta>'
    )
    path = tmp_path / "xmp.jpg"
    _pixels().save(path, "JPEG", xmp=xmp.encode())
    prov = read_provenance(path)
    assert prov.exif is not None
    assert prov.exif.creator_tool == "Some Tool"
    assert prov.exif.digital_source_type == AI_SOURCE
    assert prov.generator_hints == ["IPTC digital source type trainedAlgorithmicMedia (XMP)"]
    assert prov.label == "AI hint"


# --- Video ------------------------------------------------------------------------------------


def _video(path: Path, tags: dict[str, str], options: dict[str, str] | None = None) -> Path:
    frames = (np.full((64, 64, 3), i * 40, np.uint8) for i in range(5))
    return write_video(path, frames, 10, (64, 64), codec="mpeg4", options=options, tags=tags)


def test_video_container_tags(tmp_path: Path) -> None:
    # libavformat always stamps its own name as "encoder", which is itself the evidence to show.
    clip = _video(
        tmp_path / "clip.mp4",
        {"creation_time": "2024-03-01T12:00:00.000000Z", "comment": "Made with Sora"},
    )
    prov = read_provenance(clip)
    assert prov.kind == "video"
    assert prov.c2pa is None
    assert prov.video is not None
    assert prov.video.encoder is not None and prov.video.encoder.startswith("Lavf")
    assert prov.video.editing_software == f"{prov.video.encoder} (FFmpeg)"
    assert prov.video.creation_time == "2024-03-01T12:00:00.000000Z"
    assert prov.video.tags["comment"] == "Made with Sora"
    assert prov.generator_hints == ["Sora (container 'comment' tag)"]
    assert prov.metadata_stripped is False
    assert prov.label == "AI hint"
    assert prov.summary.startswith("metadata names an AI generator: Sora (container 'comment' tag)")
    assert prov.summary.endswith(f"container written by {prov.video.encoder} (FFmpeg)")


def test_video_with_only_encoder_and_time_names_no_source(tmp_path: Path) -> None:
    clip = _video(tmp_path / "plain.mp4", {"creation_time": "2024-03-01T12:00:00.000000Z"})
    prov = read_provenance(clip)
    assert prov.video is not None
    assert prov.label == "metadata only"
    assert prov.summary == (
        f"no provenance: container written by {prov.video.encoder} (FFmpeg), "
        "created 2024-03-01T12:00:00.000000Z, naming no camera or generator"
    )


def test_phone_video_tags_rewritten_by_ffmpeg(tmp_path: Path) -> None:
    tags = {
        "com.apple.quicktime.make": "Apple",
        "com.apple.quicktime.model": "iPhone 15",
        "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945/",
        "creation_time": "2024-03-01T12:00:00.000000Z",
    }
    clip = _video(tmp_path / "phone.mp4", tags, {"movflags": "use_metadata_tags"})
    prov = read_provenance(clip)
    assert prov.video is not None
    assert (prov.video.make, prov.video.model) == ("Apple", "iPhone 15")
    assert prov.video.has_location is True
    assert not any("location" in k for k in prov.video.tags)  # flagged, never copied out
    assert prov.label == "camera, edited"
    assert prov.summary.startswith("camera recording from Apple iPhone 15, taken 2024-03-01T12:00:00.000000Z")
    assert "later edited or rewritten with Lavf" in prov.summary


# --- Odd input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "summary"),
    [
        ("notes.txt", b"just some text\n", "no provenance: not a photo or video we could examine"),
        ("empty.jpg", b"", "no provenance: not a photo or video we could examine"),
        ("junk.jpg", b"\xff\xd8\xff" + b"\x00garbage" * 20, "no provenance: the metadata could not be read"),
        (
            "junk.mp4",
            b"\x00\x00\x00\x18ftypisom" + b"\x01" * 100,
            "no provenance: the metadata could not be read",
        ),
        ("junk.png", b"\x89PNG\r\n\x1a\n" + b"\x02" * 50, "no provenance: the metadata could not be read"),
    ],
)
def test_odd_files_never_raise(tmp_path: Path, name: str, content: bytes, summary: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    prov = read_provenance(path)
    assert prov.summary.startswith(summary)
    assert prov.c2pa is None
    assert prov.label == "none"
    json.dumps(prov.to_json())


def test_truncated_signed_file_shows_damaged_credentials(signed_ai: Path, tmp_path: Path) -> None:
    data = signed_ai.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    prov = read_provenance(truncated)
    assert prov.c2pa is not None and prov.c2pa.validation_state in ("unreadable", "invalid")
    assert prov.label == "C2PA invalid"
    assert any(note.startswith("content credentials present but unreadable") for note in prov.notes)


def test_missing_file_and_folder_never_raise(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.jpg", tmp_path):
        prov = read_provenance(path)
        assert prov.kind == "unknown"
        assert prov.notes and prov.notes[0].startswith("the file could not be read")
        assert prov.summary == "no provenance: not a photo or video we could examine"


def test_to_json_shape(signed_ai: Path) -> None:
    data = read_provenance(signed_ai).to_json()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "kind",
        "format",
        "c2pa",
        "exif",
        "video",
        "generator_hints",
        "metadata_stripped",
        "label",
        "summary",
        "notes",
    }
    assert data["c2pa"]["validation_state"] == "untrusted"
    assert data["c2pa"]["ai_generated"] is True
