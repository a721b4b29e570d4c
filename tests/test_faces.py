"""detector.faces: both detectors on real photos, border and mode cases, and crop geometry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detector.config import Settings
from detector.faces import Face, create_detector, crop_face, square_box
from detector.media import load_image

DETECTORS = ["blazeface", "haar"]


@pytest.fixture(scope="module")
def detectors():
    made = {name: create_detector(name) for name in DETECTORS}
    yield made
    for det in made.values():
        det.close()


@pytest.fixture(params=DETECTORS)
def detector(request, detectors):
    return detectors[request.param]


@pytest.fixture
def blazeface(detectors):
    return detectors["blazeface"]


def _contains(box: tuple[int, int, int, int], x: float, y: float) -> bool:
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


def _inside(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> bool:
    h, w = shape[:2]
    return box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= w and box[1] + box[3] <= h


@pytest.mark.parametrize(("index", "dataset"), [(0, "utkface"), (1, "utkface"), (0, "gan")])
def test_finds_the_face_in_a_real_photo(detector, face_image, index, dataset):
    image = face_image(index, dataset)
    faces = detector.detect(image)
    assert len(faces) >= 1
    face = faces[0]
    h, w = image.shape[:2]
    assert _inside(face.box, image.shape)
    assert _contains(face.box, w / 2, h / 2)
    assert face.size >= 0.4 * min(h, w)
    assert 0 < face.confidence <= 1


def test_two_faces_side_by_side(detector, face_image, media):
    canvas = media.paste_faces((480, 240), [face_image(0), face_image(1)])
    faces = detector.detect(canvas)
    assert len(faces) == 2
    centres = sorted(f.box[0] + f.box[2] / 2 for f in faces)
    assert centres[0] < 240 < centres[1]


def test_faces_sorted_largest_first(blazeface, face_image, media):
    small = np.asarray(Image.fromarray(face_image(1)).resize((120, 120)))
    canvas = media.paste_faces((480, 240), [small, face_image(0)])
    faces = blazeface.detect(canvas)
    assert len(faces) == 2
    assert faces[0].box[2] * faces[0].box[3] > faces[1].box[2] * faces[1].box[3]
    assert faces[0].box[0] > 240  # the full-size face sits in the right half


# Haar's frontal cascade needs most of the face; BlazeFace copes with a third of it gone.
@pytest.mark.parametrize(("name", "cut"), [("blazeface", 60), ("blazeface", 80), ("haar", 40)])
def test_face_cut_by_the_left_edge(detectors, face_image, name, cut):
    image = np.ascontiguousarray(face_image(0)[:, cut:])
    faces = detectors[name].detect(image)
    assert faces, "a face cut by the frame edge must still be found"
    box = faces[0].box
    assert box[0] == 0 and _inside(box, image.shape)
    crop = crop_face(image, box, margin=0.2, size=224)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert crop[:, :8].max() == 0, "the part of the crop past the frame edge is black"
    assert crop[:, 112:].mean() > 40, "the part inside the frame carries the picture"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_rgba_and_palette_photos_work(detector, face_image, media, tmp_path, mode):
    path = media.save_image(Image.fromarray(face_image(0)).convert(mode), tmp_path / f"face-{mode}.png")
    image = load_image(path, Settings())
    assert image.shape == (200, 200, 3)
    faces = detector.detect(image)
    assert faces and _contains(faces[0].box, 100, 100)


def test_blank_picture_has_no_face(detector, media):
    assert detector.detect(media.gradient()) == []


def test_blazeface_gives_six_landmarks_on_the_face(blazeface, face_image):
    face = blazeface.detect(face_image(0))[0]
    assert len(face.landmarks) == 6
    # BlazeFace order: right eye, left eye, nose tip, mouth, right ear, left ear (subject's sides)
    right_eye, left_eye, nose, mouth = face.landmarks[:4]
    for x, y in (right_eye, left_eye, nose, mouth):
        assert _contains(face.box, x, y)
    assert right_eye[0] < left_eye[0]  # as seen in the picture
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]


def test_haar_gives_no_landmarks(face_image):
    faces = create_detector("haar").detect(face_image(0))
    assert faces and faces[0].landmarks == []


def test_unknown_detector_named_in_error():
    with pytest.raises(ValueError, match="unknown face detector 'dlib'"):
        create_detector("dlib")


def test_face_size_is_the_shorter_side():
    assert Face(box=(0, 0, 50, 30), confidence=1.0).size == 30


@pytest.mark.parametrize(
    ("box", "margin", "expected"),
    [
        ((50, 60, 40, 20), 0.0, (50, 50, 40)),  # square on the longer side, same centre
        ((50, 60, 40, 20), 0.2, (42, 42, 56)),  # grown by 20 % of the side per edge
        ((10, 10, 30, 30), 0.5, (-5, -5, 60)),  # may run past the frame
    ],
)
def test_square_box(box, margin, expected):
    assert square_box(box, margin) == expected


def _ramp(height: int = 160, width: int = 200) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs % 256, ys % 256, (xs + ys) % 256], axis=-1).astype(np.uint8)


def test_crop_face_is_the_square_around_the_box():
    image = _ramp()
    crop = crop_face(image, (50, 60, 40, 20), margin=0.2, size=56)
    assert crop.shape == (56, 56, 3)
    assert (crop == image[42:98, 42:98]).all()


@pytest.mark.parametrize("size", [224, 112, 37])
def test_crop_face_output_size(size):
    crop = crop_face(_ramp(), (50, 60, 40, 20), margin=0.2, size=size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8


def test_crop_face_pads_black_past_every_edge():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = crop_face(image, (0, 0, 100, 100), margin=0.25, size=150)  # side 150, 25 px out each way
    assert crop.shape == (150, 150, 3)
    for band in (crop[:20], crop[-20:], crop[:, :20], crop[:, -20:]):
        assert band.max() == 0
    assert (crop[30:120, 30:120] == 200).all()
