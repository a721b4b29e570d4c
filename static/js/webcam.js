// Webcam: send a downscaled frame a few times a second (one request at a time), draw the boxes,
// and keep a running verdict over the last frames so one odd frame does not flip it.
"use strict";
(function () {
  const root = document.getElementById("webcam");
  if (!root) return;
  const frameUrl = root.dataset.frameUrl;
  const video = document.getElementById("webcam-video");
  const overlay = document.getElementById("webcam-overlay");
  const verdictBox = document.getElementById("webcam-verdict");
  const statusBox = document.getElementById("webcam-status");
  const errorBox = document.getElementById("webcam-error");
  const startButton = document.getElementById("webcam-start");
  const stopButton = document.getElementById("webcam-stop");
  const grab = document.createElement("canvas");
  const WINDOW = 12;
  const MIN_FRAMES = 4;
  const INTERVAL_MS = 250;
  let stream = null;
  let running = false;
  let history = [];
  let threshold = 0.5;
  let frames = 0;

  function draw(result) {
    overlay.width = video.clientWidth;
    overlay.height = video.clientHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!result) return;
    const sx = overlay.width / result.width;
    const sy = overlay.height / result.height;
    ctx.lineWidth = 3;
    ctx.font = "16px sans-serif";
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
    });
    overlay.dataset.boxes = String(result.faces.length);
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

  async function tick() {
    if (!running) return;
    const started = performance.now();
    if (video.videoWidth) {
      const scale = Math.min(1, 640 / video.videoWidth);
      grab.width = Math.round(video.videoWidth * scale);
      grab.height = Math.round(video.videoHeight * scale);
      grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
      const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.8));
      const data = new FormData();
      data.append("frame", blob, "frame.jpg");
      try {
        const answer = await Unmask.postForm(frameUrl, data);
        if (answer.ok) {
          errorBox.textContent = "";
          frames += 1;
          draw(answer.body);
          updateVerdict(answer.body);
          statusBox.textContent = frames + " frames checked · " + Math.round(performance.now() - started) + " ms for the last one";
        } else {
          errorBox.textContent = Unmask.errorMessage(answer.body);
        }
      } catch (e) {
        errorBox.textContent = "lost contact with the server";
      }
    }
    const wait = Math.max(0, INTERVAL_MS - (performance.now() - started));
    setTimeout(tick, wait);
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
    running = true;
    startButton.hidden = true;
    stopButton.hidden = false;
    verdictBox.textContent = "Looking…";
    tick();
  }

  function stop() {
    running = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    draw(null);
    startButton.hidden = false;
    stopButton.hidden = true;
    verdictBox.textContent = "Camera off.";
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
})();
