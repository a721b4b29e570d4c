// Webcam: analyse the live picture on this device when the browser can (webcam-device.js:
// WebAssembly, MediaPipe, ONNX Runtime Web), so no frame leaves it; otherwise send a downscaled
// frame to the server a few times a second (one request at a time). Either way: draw the boxes,
// show the frames analysed per second, and keep a running verdict over the last frames so one
// odd frame does not flip it. `?mode=server` skips on-device analysis.
"use strict";
(function () {
  const root = document.getElementById("webcam");
  if (!root) return;
  const frameUrl = root.dataset.frameUrl;
  const video = document.getElementById("webcam-video");
  const overlay = document.getElementById("webcam-overlay");
  const verdictBox = document.getElementById("webcam-verdict");
  const modeBox = document.getElementById("webcam-mode");
  const fpsBox = document.getElementById("webcam-fps");
  const statusBox = document.getElementById("webcam-status");
  const errorBox = document.getElementById("webcam-error");
  const startButton = document.getElementById("webcam-start");
  const stopButton = document.getElementById("webcam-stop");
  const grab = document.createElement("canvas");
  const grabContext = grab.getContext("2d", { willReadFrequently: true });
  const WINDOW = 12;
  const MIN_FRAMES = 4;
  const INTERVAL_MS = 250;
  const FPS_WINDOW_MS = 3000;
  const forceServer = new URLSearchParams(location.search).get("mode") === "server";
  let stream = null;
  let running = false;
  let run = 0; // each start begins a new run; a loop of an earlier run stops itself
  let tracks = []; // the people in view: {box, scores, mean, verdict, missed}
  let frames = 0;
  let done = [];
  let mode = "";
  let engine = null; // a promise of the on-device engine, made once

  function setMode(next, reason) {
    mode = next;
    modeBox.dataset.mode = next;
    if (next === "device") modeBox.textContent = "Analysed on this device: no frame leaves it.";
    else if (next === "server") modeBox.textContent = "Analysed on the server." + (reason ? " (" + reason + ")" : "");
    else if (next === "loading") modeBox.textContent = "Loading the on-device model…";
    else modeBox.textContent = "";
  }

  function showRate() {
    const now = performance.now();
    done.push(now);
    done = done.filter((t) => now - t <= FPS_WINDOW_MS);
    const fps = done.length > 1 ? ((done.length - 1) * 1000) / (done[done.length - 1] - done[0]) : 0;
    fpsBox.dataset.fps = fps.toFixed(2);
    fpsBox.textContent = fps > 0 ? fps.toFixed(1) + " frames/s" : "";
  }

  const COLORS = { fake: "#e74c3c", real: "#2ecc71", uncertain: "#f0a020" };

  function iou(a, b) {
    const iw = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
    const ih = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
    const inter = iw * ih;
    const union = a[2] * a[3] + b[2] * b[3] - inter;
    return union > 0 ? inter / union : 0;
  }

  // Each judged face joins the person it overlaps from the frames before, whose running mean
  // over the last WINDOW frames is both its box's label and (for the most suspicious person in
  // view) the headline: one number, shown twice. A person unseen for a few frames is forgotten.
  function follow(result) {
    const seen = [];
    result.faces.forEach((face) => {
      face.person = null;
      if (face.fake_probability === null || face.fake_probability === undefined) return;
      let best = null;
      let bestOverlap = 0.3;
      tracks.forEach((t) => {
        const overlap = seen.includes(t) ? 0 : iou(t.box, face.box);
        if (overlap > bestOverlap) {
          best = t;
          bestOverlap = overlap;
        }
      });
      const person = best || { scores: [] };
      person.box = face.box;
      person.missed = 0;
      person.scores = person.scores.concat([face.fake_probability]).slice(-WINDOW);
      person.mean = person.scores.reduce((x, y) => x + y, 0) / person.scores.length;
      person.verdict = Unmask.verdict(person.mean, result); // common.js: the rule every page uses
      face.person = person;
      seen.push(person);
    });
    tracks.forEach((t) => {
      if (!seen.includes(t)) t.missed += 1;
    });
    tracks = seen.concat(tracks.filter((t) => !seen.includes(t) && t.missed <= 2));
    return seen;
  }

  function draw(result) {
    overlay.width = video.clientWidth;
    overlay.height = video.clientHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!result) {
      overlay.dataset.boxes = "0";
      overlay.dataset.labels = "";
      return;
    }
    const sx = overlay.width / result.width;
    const sy = overlay.height / result.height;
    ctx.lineWidth = 3;
    ctx.font = "16px sans-serif";
    const labels = [];
    result.faces.forEach((face) => {
      const [x, y, w, h] = face.box;
      const person = face.person;
      const color = person ? COLORS[person.verdict] : "#aaaaaa";
      const label = person ? person.verdict.toUpperCase() + " " + Math.round(person.mean * 100) + "%" : "too small";
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.strokeRect(x * sx, y * sy, w * sx, h * sy);
      const tw = ctx.measureText(label).width + 8;
      ctx.fillRect(x * sx, Math.max(0, y * sy - 22), tw, 22);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x * sx + 4, Math.max(16, y * sy - 6));
      labels.push(label);
    });
    overlay.dataset.boxes = String(result.faces.length);
    overlay.dataset.labels = labels.join("|");
  }

  const HEADLINE = { fake: "Likely FAKE", real: "Likely REAL", uncertain: "Uncertain: the model cannot tell from this face" };

  function updateVerdict(result, people) {
    let text = "";
    let kind = "none";
    if (!result.faces.length) {
      text = "No face in view.";
    } else if (!people.length) {
      text = "A face is in view but too small to judge: come closer to the camera.";
    } else {
      const worst = people.reduce((a, b) => (b.mean > a.mean ? b : a));
      if (worst.scores.length < MIN_FRAMES) {
        text = "Looking…";
      } else {
        kind = worst.verdict;
        text = HEADLINE[kind] + " · " + Math.round(worst.mean * 100) + "% fake over the last " + worst.scores.length + " frames";
      }
    }
    verdictBox.textContent = text;
    verdictBox.className = "verdict " + kind;
  }

  function show(result, started) {
    frames += 1;
    const people = follow(result);
    draw(result);
    updateVerdict(result, people);
    showRate();
    statusBox.textContent = frames + (frames === 1 ? " frame" : " frames") + " checked · " + Math.round(performance.now() - started) + " ms for the last one";
  }

  function grabFrame() {
    const scale = Math.min(1, 640 / video.videoWidth);
    const width = Math.round(video.videoWidth * scale);
    const height = Math.round(video.videoHeight * scale);
    if (grab.width !== width || grab.height !== height) {
      grab.width = width;
      grab.height = height;
    }
    grabContext.drawImage(video, 0, 0, width, height);
  }

  // The next new camera frame (or the next turn where the browser cannot tell).
  function nextFrame(callback) {
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => callback());
    else setTimeout(callback, 0);
  }

  async function deviceTick(current) {
    if (!running || current !== run) return;
    const started = performance.now();
    if (video.videoWidth) {
      grabFrame();
      try {
        const result = await (await engine).analyze(grab, true);
        if (!running || current !== run) return;
        errorBox.textContent = "";
        show(result, started);
      } catch (e) {
        console.error("on-device analysis failed", e);
        engine = null;
        setMode("server", "on-device analysis stopped working here");
        serverTick(current);
        return;
      }
    }
    nextFrame(() => deviceTick(current));
  }

  async function serverTick(current) {
    if (!running || current !== run) return;
    const started = performance.now();
    if (video.videoWidth) {
      grabFrame();
      const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.8));
      const data = new FormData();
      data.append("frame", blob, "frame.jpg");
      try {
        const answer = await Unmask.postForm(frameUrl, data);
        if (!running || current !== run) return;
        if (answer.ok) {
          errorBox.textContent = "";
          show(answer.body, started);
        } else {
          errorBox.textContent = Unmask.errorMessage(answer.body);
        }
      } catch (e) {
        errorBox.textContent = "lost contact with the server";
      }
    }
    const wait = Math.max(0, INTERVAL_MS - (performance.now() - started));
    setTimeout(() => serverTick(current), wait);
  }

  // The on-device engine, or why there is none (then frames go to the server).
  async function chooseMode() {
    if (forceServer) return ["server", "on-device analysis switched off by ?mode=server"];
    if (!window.UnmaskDevice) return ["server", "on-device analysis did not load"];
    setMode("loading");
    if (!engine) {
      engine = UnmaskDevice.create({
        vendorUrl: root.dataset.vendorUrl,
        cardUrl: root.dataset.modelUrl,
      });
    }
    try {
      await engine;
      return ["device", ""];
    } catch (e) {
      console.error("on-device analysis is not available", e);
      engine = null;
      return ["server", "this browser cannot analyse on the device here: " + (e.message || "it failed to start")];
    }
  }

  async function start() {
    errorBox.textContent = "";
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (e) {
      errorBox.textContent = "the camera could not be opened: " + (e.message || e.name);
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    tracks = [];
    frames = 0;
    done = [];
    running = true;
    run += 1;
    const current = run;
    startButton.hidden = true;
    stopButton.hidden = false;
    verdictBox.textContent = "Looking…";
    const [chosen, reason] = await chooseMode();
    if (!running || current !== run) return;
    setMode(chosen, reason);
    if (chosen === "device") deviceTick(current);
    else serverTick(current);
  }

  function stop() {
    running = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    draw(null);
    startButton.hidden = false;
    stopButton.hidden = true;
    verdictBox.textContent = "Camera off.";
    fpsBox.textContent = "";
    fpsBox.dataset.fps = "0";
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
})();
