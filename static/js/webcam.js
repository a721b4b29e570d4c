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
  let history = [];
  let threshold = 0.5;
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

  function draw(result) {
    overlay.width = video.clientWidth;
    overlay.height = video.clientHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!result) {
      overlay.dataset.boxes = "0";
      return;
    }
    const sx = overlay.width / result.width;
    const sy = overlay.height / result.height;
    ctx.lineWidth = 3;
    ctx.font = "16px sans-serif";
    const labels = [];
    result.faces.forEach((face) => {
      const [x, y, w, h] = face.box;
      const color = face.verdict === "fake" ? "#e74c3c" : face.verdict === "real" ? "#2ecc71" : "#aaaaaa";
      const label = face.verdict ? face.verdict.toUpperCase() + " " + Math.round(face.fake_probability * 100) + "%" : "too small";
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

  function updateVerdict(result) {
    threshold = result.threshold;
    const scores = result.faces.map((f) => f.fake_probability).filter((p) => p !== null);
    if (scores.length) history.push(Math.max.apply(null, scores));
    history = history.slice(-WINDOW);
    if (history.length < MIN_FRAMES) {
      verdictBox.textContent = scores.length ? "Looking…" : "No face in view.";
      verdictBox.className = "verdict";
      return;
    }
    const mean = history.reduce((a, b) => a + b, 0) / history.length;
    const fake = mean >= threshold;
    verdictBox.textContent = (fake ? "Likely FAKE" : "Likely REAL") + " · " + Math.round(mean * 100) + "% fake over the last " + history.length + " frames";
    verdictBox.className = "verdict " + (fake ? "fake" : "real");
  }

  function show(result, started) {
    frames += 1;
    draw(result);
    updateVerdict(result);
    showRate();
    statusBox.textContent = frames + " frames checked · " + Math.round(performance.now() - started) + " ms for the last one";
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
        const result = await (await engine).analyze(grab);
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
        minFaceSize: root.dataset.minFaceSize,
      });
    }
    try {
      await engine;
      return ["device", ""];
    } catch (e) {
      console.error("on-device analysis is not available", e);
      engine = null;
      return ["server", "this browser cannot analyse on the device here: " + (e.message || e)];
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
    history = [];
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
