// On-device analysis for the webcam page: MediaPipe's BlazeFace (the legacy JS solution) finds
// the faces and ONNX Runtime Web scores each one with the same INT8 model the server uses, so no
// frame leaves the browser. Crops and input tensors are made as the server makes them:
// detector/faces.py (square_box, crop_face with OpenCV's INTER_AREA / INTER_LINEAR resize,
// mask_frame) and detector/classifier.py (RGB, NCHW, (x/255 - mean)/std, from the model card).
// tests/webapp/test_webcam_device.py checks that the scores agree with the Python predictor.
// Library files come from static/vendor/ (scripts/vendor.sh), the model from /webcam/model/.
"use strict";
window.UnmaskDevice = (function () {
  // BlazeFaceDetector's rules in detector/faces.py (without its full-range pass), as the server
  // sends them in the card's "detection" (worker/live.py); these are only the fallback.
  const RULES = {
    confident: 0.75,
    border: 0.3,
    border_min: 0.6,
    crop_like_side: 360,
    min_confidence: 0.5,
    live_min_confidence: 0.75,
    min_face_size: 36,
  };

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      // the address goes to the console; the page says it in words (webcam.js shows the message)
      script.onerror = () => {
        console.error("could not load " + src);
        reject(new Error("its analysis files did not load"));
      };
      document.head.appendChild(script);
    });
  }

  // Python's round(): exact halves go to the even neighbour.
  function pyRound(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // detector.faces.square_box: (x, y, side) of the square around a box, grown by margin per edge.
  function squareBox(box, margin) {
    const [x, y, w, h] = box;
    const side = Math.max(w, h) * (1.0 + 2.0 * margin);
    const cx = x + w / 2.0;
    const cy = y + h / 2.0;
    return [pyRound(cx - side / 2), pyRound(cy - side / 2), Math.max(1, pyRound(side))];
  }

  // OpenCV's resize (modules/imgproc/src/resize.cpp) for 8-bit pictures, reproduced bit for bit:
  // INTER_AREA when shrinking (float sums, or block means at whole-number scales), INTER_LINEAR
  // when enlarging (11-bit fixed-point weights, the vector path's rounding).
  const rint = pyRound; // cvRound: halves to even

  function areaTable(ssize, dsize) {
    const scale = 1 / (dsize / ssize);
    const table = []; // [destination, source, weight]
    for (let d = 0; d < dsize; d++) {
      const fs1 = d * scale;
      const fs2 = fs1 + scale;
      const cell = Math.min(scale, ssize - fs1);
      const s2 = Math.min(Math.floor(fs2), ssize - 1);
      const s1 = Math.min(Math.ceil(fs1), s2);
      if (s1 - fs1 > 1e-3) table.push([d, s1 - 1, Math.fround((s1 - fs1) / cell)]);
      for (let s = s1; s < s2; s++) table.push([d, s, Math.fround(1 / cell)]);
      if (fs2 - s2 > 1e-3) table.push([d, s2, Math.fround(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
    }
    return table;
  }

  function resizeArea(src, side, size) {
    const out = new Uint8ClampedArray(size * size * 3);
    const k = side / size;
    if (Number.isInteger(k)) {
      const area = k * k;
      const scale = Math.fround(1 / area);
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          for (let c = 0; c < 3; c++) {
            let sum = 0;
            for (let i = 0; i < k; i++) {
              for (let j = 0; j < k; j++) sum += src[((y * k + i) * side + x * k + j) * 3 + c];
            }
            out[(y * size + x) * 3 + c] = k === 2 ? (sum + 2) >> 2 : rint(Math.fround(sum * scale));
          }
        }
      }
      return out;
    }
    const xs = areaTable(side, size);
    const ys = areaTable(side, size);
    const rows = new Map();
    const row = (sy) => {
      if (!rows.has(sy)) {
        const buf = new Float32Array(size * 3);
        const base = sy * side * 3;
        for (const [d, s, alpha] of xs) {
          for (let c = 0; c < 3; c++) {
            buf[d * 3 + c] = buf[d * 3 + c] + Math.fround(src[base + s * 3 + c] * alpha);
          }
        }
        rows.set(sy, buf);
      }
      return rows.get(sy);
    };
    const sum = new Float32Array(size * 3);
    let prev = -1;
    const flush = () => {
      for (let i = 0; i < size * 3; i++) out[prev * size * 3 + i] = rint(sum[i]);
    };
    for (const [d, s, beta] of ys) {
      const buf = row(s);
      if (d !== prev) {
        if (prev >= 0) flush();
        for (let i = 0; i < size * 3; i++) sum[i] = beta * buf[i];
        prev = d;
      } else {
        for (let i = 0; i < size * 3; i++) sum[i] = sum[i] + Math.fround(beta * buf[i]);
      }
    }
    flush();
    return out;
  }

  function linearTable(ssize, dsize, clamp) {
    const scale = 1 / (dsize / ssize);
    const table = []; // [source, weight of source, weight of source + 1]
    for (let d = 0; d < dsize; d++) {
      let f = Math.fround((d + 0.5) * scale - 0.5);
      let s = Math.floor(f);
      f = Math.fround(f - s);
      if (clamp && s < 0) {
        s = 0;
        f = 0;
      }
      if (clamp && s >= ssize - 1) {
        s = ssize - 1;
        f = 0;
      }
      table.push([s, rint(Math.fround(Math.fround(1 - f) * 2048)), rint(Math.fround(f * 2048))]);
    }
    return table;
  }

  function resizeLinear(src, side, size) {
    const xs = linearTable(side, size, true);
    const ys = linearTable(side, size, false);
    const h = new Int32Array(side * size * 3);
    for (let r = 0; r < side; r++) {
      for (let d = 0; d < size; d++) {
        const [s, a0, a1] = xs[d];
        for (let c = 0; c < 3; c++) {
          const p = (r * side + s) * 3 + c;
          h[(r * size + d) * 3 + c] = s + 1 < side ? src[p] * a0 + src[p + 3] * a1 : src[p] * 2048;
        }
      }
    }
    const out = new Uint8ClampedArray(size * size * 3);
    const clampRow = (r) => Math.min(Math.max(r, 0), side - 1);
    for (let d = 0; d < size; d++) {
      const [s, b0, b1] = ys[d];
      const r0 = clampRow(s) * size * 3;
      const r1 = clampRow(s + 1) * size * 3;
      for (let i = 0; i < size * 3; i++) {
        out[d * size * 3 + i] = ((((h[r0 + i] >> 4) * b0) >> 16) + (((h[r1 + i] >> 4) * b1) >> 16) + 2) >> 2;
      }
    }
    return out;
  }

  // detector.faces.crop_face + mask_frame on an RGBA frame: size x size RGB bytes.
  function cropFace(rgba, width, height, box, margin, size, frameMask) {
    const [sx, sy, side] = squareBox(box, margin);
    const square = new Uint8Array(side * side * 3); // black where it runs past the frame
    for (let r = Math.max(0, -sy); r < Math.min(side, height - sy); r++) {
      for (let c = Math.max(0, -sx); c < Math.min(side, width - sx); c++) {
        const p = ((sy + r) * width + sx + c) * 4;
        const q = (r * side + c) * 3;
        square[q] = rgba[p];
        square[q + 1] = rgba[p + 1];
        square[q + 2] = rgba[p + 2];
      }
    }
    let crop;
    if (side === size) crop = square;
    else if (side > size) crop = resizeArea(square, side, size);
    else crop = resizeLinear(square, side, size);
    const b = frameMask > 0 ? pyRound(size * frameMask) : 0;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const p = (y * size + x) * 3;
        if (y < b || y >= size - b || x < b || x >= size - b) crop.fill(0, p, p + 3);
      }
    }
    return crop;
  }

  // detector.classifier.Predictor.preprocess for one crop, written into a batch at index n.
  function writeTensor(batch, n, crop, size, mean, std) {
    const plane = size * size;
    const base = n * 3 * plane;
    for (let c = 0; c < 3; c++) {
      const m = Math.fround(mean[c]);
      const s = Math.fround(std[c]);
      for (let i = 0; i < plane; i++) {
        batch[base + c * plane + i] = (Math.fround(crop[i * 3 + c] / 255) - m) / s;
      }
    }
  }

  function sigmoid(x) {
    return 1 / (1 + Math.exp(-Math.min(60, Math.max(-60, x))));
  }

  function iou(a, b) {
    const iw = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
    const ih = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
    const inter = iw * ih;
    const union = a[2] * a[3] + b[2] * b[3] - inter;
    return { value: union > 0 ? inter / union : 0, inter: inter };
  }

  // detector.faces._dedupe: one box per face, largest first.
  function dedupe(faces) {
    const kept = [];
    faces
      .slice()
      .sort((p, q) => q.confidence - p.confidence)
      .forEach((face) => {
        const same = kept.some((k) => {
          const o = iou(face.box, k.box);
          const smaller = Math.min(face.box[2] * face.box[3], k.box[2] * k.box[3]);
          return o.value >= 0.3 || (smaller > 0 && o.inter / smaller >= 0.7);
        });
        if (!same) kept.push(face);
      });
    return kept.sort((p, q) => q.box[2] * q.box[3] - p.box[2] * p.box[3]);
  }

  // A detection's score. The solution's bundle is minified: the score sits in the detection's
  // classification list ({index, score, label}) under a mangled name, so take its first number.
  function detectionScore(det) {
    for (const value of Object.values(det)) {
      if (!Array.isArray(value) || !value.length || !value[0] || !("index" in value[0])) continue;
      if (typeof value[0].score === "number") return value[0].score;
      for (const [key, v] of Object.entries(value[0])) if (key !== "index" && typeof v === "number") return v;
    }
    return NaN;
  }

  function clipBox(x, y, w, h, width, height) {
    const x0 = Math.max(0, x);
    const y0 = Math.max(0, y);
    const x1 = Math.min(width, x + w);
    const y1 = Math.min(height, y + h);
    return [pyRound(x0), pyRound(y0), pyRound(x1 - x0), pyRound(y1 - y0)];
  }

  async function create(options) {
    const vendor = options.vendorUrl;
    if (typeof WebAssembly !== "object") throw new Error("it has no WebAssembly");
    const probe = document.createElement("canvas");
    if (!probe.getContext("webgl2") && !probe.getContext("webgl")) throw new Error("it has no WebGL for the face detector");
    await Promise.all([
      loadScript(vendor + "ort/ort.wasm.min.js"),
      loadScript(vendor + "face_detection/face_detection.js"),
    ]);
    if (!window.ort || !window.FaceDetection) throw new Error("its analysis files did not load");

    const cardResponse = await fetch(options.cardUrl, { credentials: "same-origin" });
    if (!cardResponse.ok) throw new Error("the model is not available from this server");
    const card = await cardResponse.json();
    const modelUrl = new URL(card.file, new URL(options.cardUrl, location.href));
    modelUrl.searchParams.set("v", card.version); // a new model is fetched anew, not from a cache
    const modelResponse = await fetch(modelUrl, { credentials: "same-origin" });
    if (!modelResponse.ok) throw new Error("the model is not available from this server");

    ort.env.wasm.wasmPaths = vendor + "ort/";
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation; one is enough for Lite0
    ort.env.wasm.proxy = false;
    const session = await ort.InferenceSession.create(new Uint8Array(await modelResponse.arrayBuffer()), {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });

    const detector = new FaceDetection({ locateFile: (file) => vendor + "face_detection/" + file });
    const rules = Object.assign({}, RULES, card.detection || {});
    detector.setOptions({ model: "short", minDetectionConfidence: rules.min_confidence, selfieMode: false });
    let latest = null;
    detector.onResults((results) => {
      latest = results.detections || [];
    });
    await detector.initialize();

    const minFaceSize = Number(rules.min_face_size);
    const size = card.input_size;
    const border = document.createElement("canvas");

    async function detectOn(image, width, height, pad) {
      latest = null;
      await detector.send({ image: image });
      const pw = width + 2 * pad[0];
      const ph = height + 2 * pad[1];
      const faces = [];
      (latest || []).forEach((det) => {
        const r = det.boundingBox;
        const box = clipBox(
          (r.xCenter - r.width / 2) * pw - pad[0],
          (r.yCenter - r.height / 2) * ph - pad[1],
          r.width * pw,
          r.height * ph,
          width,
          height
        );
        if (box[2] >= 2 && box[3] >= 2) faces.push({ box: box, confidence: detectionScore(det) });
      });
      return faces;
    }

    // Faces in a canvas, largest first (BlazeFaceDetector.detect without the full-range model).
    async function detect(canvas) {
      const width = canvas.width;
      const height = canvas.height;
      let faces = await detectOn(canvas, width, height, [0, 0]);
      if (!faces.some((f) => f.confidence >= rules.confident)) {
        const px = pyRound(width * rules.border);
        const py = pyRound(height * rules.border);
        border.width = width + 2 * px;
        border.height = height + 2 * py;
        const ctx = border.getContext("2d");
        ctx.fillStyle = "#000";
        ctx.fillRect(0, 0, border.width, border.height);
        ctx.drawImage(canvas, px, py);
        const cropLike = Math.min(width, height) < rules.crop_like_side;
        const bordered = await detectOn(border, width, height, [px, py]);
        faces = faces.concat(bordered.filter((f) => cropLike || f.confidence >= rules.border_min));
      }
      return dedupe(faces);
    }

    // The card's thresholds are on the calibrated probability, sigmoid(logit / temperature +
    // bias), as detector/calibration.py serves it: the raw sigmoid would judge on another scale.
    const calibration = card.calibration || { method: "none" };
    function calibrated(logit) {
      if (!calibration.method || calibration.method === "none") return logit;
      return logit / calibration.temperature + (calibration.bias || 0);
    }

    // Fake probabilities for face boxes in an RGBA frame (one batch through the model).
    async function score(rgba, width, height, boxes) {
      if (!boxes.length) return [];
      const batch = new Float32Array(boxes.length * 3 * size * size);
      boxes.forEach((box, n) => {
        const crop = cropFace(rgba, width, height, box, card.crop_margin, size, card.frame_mask);
        writeTensor(batch, n, crop, size, card.mean, card.std);
      });
      const input = new ort.Tensor("float32", batch, [boxes.length, 3, size, size]);
      const output = await session.run({ image: input });
      return Array.from(output.logit.data, (logit) => sigmoid(calibrated(logit)));
    }

    function pixels(canvas) {
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      return ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    }

    // One frame: the same answer as the server's /webcam/frame. `live` keeps only faces as sure
    // as the live rule (what the server's frame task keeps too); without it, every face found.
    async function analyze(canvas, live) {
      let faces = await detect(canvas);
      if (live) faces = faces.filter((f) => f.confidence >= rules.live_min_confidence);
      const judged = faces.filter((f) => Math.min(f.box[2], f.box[3]) >= minFaceSize);
      const probs = await score(pixels(canvas), canvas.width, canvas.height, judged.map((f) => f.box));
      const out = faces.map((f) => {
        const k = judged.indexOf(f);
        const p = k >= 0 ? probs[k] : null;
        const item = { box: f.box, confidence: f.confidence, fake_probability: p };
        if (p === null) item.too_small = true;
        // the card's two calibrated thresholds, by the rule every page uses (common.js, loaded
        // first by base.html); card.threshold alone is on the uncalibrated sigmoid
        item.verdict = window.Unmask.verdict(p, card);
        return item;
      });
      // as the server: `threshold` is the fake threshold on the calibrated probability
      const threshold = card.thresholds ? card.thresholds.fake : card.threshold;
      const answer = { width: canvas.width, height: canvas.height, threshold: threshold, faces: out };
      if (card.thresholds) answer.thresholds = card.thresholds;
      return answer;
    }

    return {
      card: card,
      rules: rules,
      analyze: analyze,
      detect: detect,
      // The fake probability of the face in box [x, y, w, h] of a canvas (for parity checks).
      scoreBox: async (canvas, box) => (await score(pixels(canvas), canvas.width, canvas.height, [box]))[0],
      close: () => detector.close(),
    };
  }

  // create() makes the engine; cropFace is exposed for tests/webapp/test_webcam_device.py.
  return { create: create, cropFace: cropFace };
})();
