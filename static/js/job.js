// Job page: follow the worker's progress, then show the verdict and its evidence.
"use strict";
(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const statusUrl = root.dataset.statusUrl;
  const $ = (id) => document.getElementById(id);
  // Each stage's words, from the server (webapp/status.py), so the page and this script agree.
  const STAGE_TEXT = JSON.parse(root.dataset.stageText || "{}");
  let delay = 500;

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showProgress(status) {
    $("stage").textContent = STAGE_TEXT[status.stage] || status.stage;
    $("progress").value = status.progress || 0;
    let reached = true;
    document.querySelectorAll("#stages li").forEach((li) => {
      if (li.dataset.stage === status.stage) {
        li.className = "current";
        reached = false;
      } else {
        li.className = reached && status.state === "running" && status.stage !== "starting" ? "past" : "";
      }
    });
  }

  function showMedia(result) {
    const media = $("media");
    media.textContent = "";
    if (!result.annotated_url) return;
    if (result.kind === "video") {
      const video = el("video", { id: "annotated-video", src: result.annotated_url, controls: "", playsinline: "", preload: "metadata" });
      media.appendChild(video);
      $("video-note").hidden = result.status !== "ok";
    } else {
      media.appendChild(el("img", { id: "annotated-image", src: result.annotated_url, alt: "annotated photo" }));
    }
  }

  // Verdicts are strings: "real", "fake" and (with two thresholds) "uncertain", each with its
  // words and colour; anything new falls back to neutral words rather than a wrong colour.
  const HEADLINE = {
    fake: "Likely FAKE",
    real: "Likely REAL",
    uncertain: "Uncertain: the model cannot tell from this face",
  };
  const FACE_WORDS = { fake: "likely fake", real: "likely real", uncertain: "the model cannot tell from this face" };

  // A face card's verdict: its own, or its person's (videos), or from the thresholds.
  function faceVerdict(face, result) {
    if (face.verdict) return face.verdict;
    const person = (result.persons || []).find((p) => p.track_id === face.track_id && face.track_id !== undefined);
    if (person && person.verdict) return person.verdict;
    return Unmask.verdict(face.fake_probability, result);
  }

  function showFaces(result) {
    const box = $("faces");
    box.textContent = "";
    (result.evidence || []).forEach((face, i) => {
      const verdict = faceVerdict(face, result);
      const card = el("figure", { class: "face " + (verdict || "none"), "data-verdict": verdict || "" });
      if (face.crop_url) card.appendChild(el("img", { src: face.crop_url, alt: "face " + (i + 1) }));
      if (face.heatmap_url) card.appendChild(el("img", { src: face.heatmap_url, alt: "regions that drove the score for face " + (i + 1) }));
      const who = face.track_id !== null && face.track_id !== undefined ? "Person " + (face.track_id + 1) : "Face " + (i + 1);
      const words = FACE_WORDS[verdict] ? " · " + FACE_WORDS[verdict] : "";
      card.appendChild(el("figcaption", {}, who + ": " + Unmask.percent(face.fake_probability) + " fake" + words));
      box.appendChild(card);
    });
    $("faces-title").hidden = !(result.evidence || []).length;
    $("heatmap-legend").hidden = !(result.evidence || []).some((face) => face.heatmap_url);
  }

  function showTimeline(result) {
    const points = (result.timeline || []).filter((p) => p.fake_probability !== null);
    if (result.kind !== "video" || !points.length) return;
    $("timeline-box").hidden = false;
    if (typeof Chart === "undefined") return;
    const t = Unmask.thresholdsOf(result);
    new Chart($("timeline"), {
      type: "line",
      data: {
        datasets: [
          { label: "fake probability", data: points.map((p) => ({ x: p.time, y: p.fake_probability })), borderColor: "#c0392b", pointRadius: 2, tension: 0.2 },
          { label: "fake from here", data: points.map((p) => ({ x: p.time, y: t.fake })), borderColor: "#888", borderDash: [4, 4], pointRadius: 0 },
        ].concat(
          t.real !== t.fake
            ? [{ label: "real below here", data: points.map((p) => ({ x: p.time, y: t.real })), borderColor: "#1e9e4a", borderDash: [2, 4], pointRadius: 0 }]
            : []
        ),
      },
      options: {
        animation: false,
        parsing: false,
        scales: { x: { type: "linear", title: { display: true, text: "seconds" } }, y: { min: 0, max: 1 } },
      },
    });
  }

  const C2PA_TEXT = {
    valid: "Content credentials: signature valid, signer trusted.",
    untrusted: "Content credentials: signature intact, but the signer is on no trust list we hold.",
    invalid: "Warning: the content credentials are invalid; the file was changed after signing or the manifest is damaged.",
    unreadable: "Warning: the content credentials could not be read.",
  };

  function showProvenance(result) {
    const prov = result && result.provenance;
    const box = $("provenance");
    if (!prov) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    $("provenance-summary").textContent = prov.summary || "No provenance information.";
    const c2pa = prov.c2pa;
    const state = $("provenance-c2pa");
    if (c2pa && c2pa.validation_state) {
      state.hidden = false;
      state.textContent = C2PA_TEXT[c2pa.validation_state] || "Content credentials: " + c2pa.validation_state;
      state.className = "c2pa c2pa-" + c2pa.validation_state;
      state.setAttribute("role", c2pa.validation_state === "invalid" || c2pa.validation_state === "unreadable" ? "alert" : "note");
    } else {
      state.hidden = true;
    }
    const facts = $("provenance-facts");
    facts.textContent = "";
    const exif = prov.exif || {};
    const video = prov.video || {};
    const make = exif.make || video.make || "";
    const model = exif.model || video.model || "";
    // "Canon" + "Canon EOS 5D" reads "Canon EOS 5D", not "Canon Canon EOS 5D"
    const camera = make && model.toLowerCase().startsWith(make.toLowerCase()) ? model : [make, model].filter(Boolean).join(" ");
    const software = exif.software || exif.creator_tool || video.software || video.encoder;
    const rows = [
      ["Signed by", c2pa && c2pa.signer],
      ["Source type", c2pa && c2pa.digital_source_type ? String(c2pa.digital_source_type).split("/").pop() : exif.digital_source_type],
      ["Made with", c2pa && c2pa.claim_generator],
      ["Camera", camera],
      ["Captured", exif.capture_time || video.creation_time],
      ["Software", software],
      ["Generator hints", (prov.generator_hints || []).join(", ")],
    ];
    rows.forEach(([name, value]) => {
      if (!value) return;
      facts.appendChild(el("dt", {}, name));
      facts.appendChild(el("dd", {}, String(value)));
    });
  }

  // "No face found" is a result: say what was searched, in the page's neutral colour.
  function showNoFace(result) {
    $("verdict").textContent = "No face found";
    $("verdict").className = "verdict none";
    const size = result.width && result.height ? " (" + result.width + "×" + result.height + " px)" : "";
    let checked = result.kind === "video"
      ? "Checked " + plural(result.frames_analyzed || 0, "sampled frame") + " of the video" + size + "."
      : "Checked the whole photo" + size + ".";
    const small = (result.faces || []).filter((f) => f.too_small).length;
    checked += small
      ? " " + plural(small, "face") + " found, too small to judge (under " + (result.min_face_size || 36) + " px)."
      : " No face was found, so there is nothing to score.";
    $("summary").textContent = checked + " Try a picture where a face is clearly visible and larger.";
    showMedia(result);
  }

  function showResult(status) {
    const result = status.result;
    $("progress-box").hidden = true;
    $("result").hidden = false;
    $("json-link").href = status.json_url;
    $("json-box").hidden = status.state !== "done"; // a failed job has no result to download
    showProvenance(result);
    if (result && result.status === "no_face") {
      showNoFace(result);
      return;
    }
    if (!result || result.status !== "ok") {
      $("verdict").textContent = "";
      if (result) {
        showMedia(result);
      }
      return;
    }
    const verdict = result.verdict || Unmask.verdict(result.fake_probability, result);
    $("verdict").textContent = (HEADLINE[verdict] || "Verdict: " + verdict) + " · " + Unmask.percent(result.fake_probability) + " fake";
    $("verdict").className = "verdict " + (HEADLINE[verdict] ? verdict : "none");
    $("verdict").dataset.verdict = verdict || "";
    const faces = (result.evidence || []).length;
    const t = Unmask.thresholdsOf(result);
    let summary = plural(faces, "face") + " judged; ";
    summary += t.real !== t.fake
      ? "real below " + Unmask.percent(t.real) + ", fake from " + Unmask.percent(t.fake) + ", uncertain between"
      : "threshold " + Unmask.percent(t.fake);
    if (result.kind === "video") summary += "; " + plural(result.frames_analyzed || 0, "frame") + " sampled";
    if (result.model) summary += "; model " + result.model;
    if (typeof result.model_decided === "number") {
      summary += " (it decides on " + Unmask.percent(result.model_decided) + " of its test faces and says uncertain on the rest)";
    }
    $("summary").textContent = summary;
    showMedia(result);
    showFaces(result);
    showTimeline(result);
  }

  function showFailure(status) {
    const box = $("failure");
    box.hidden = false;
    box.textContent = "The analysis failed: " + ((status.error && status.error.message) || "unknown error") + ".";
    $("progress-box").hidden = true;
    showResult(status);
  }

  async function poll() {
    let status = null;
    try {
      const response = await fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      status = await response.json();
      if (!response.ok) {
        showFailure({ error: status.error || { message: "the job was not found" } });
        return;
      }
    } catch (e) {
      $("stage").textContent = "Lost contact with the server; retrying…";
      setTimeout(poll, 2000);
      return;
    }
    root.dataset.state = status.state;
    if (status.state === "done") {
      showResult(status);
    } else if (status.state === "failed") {
      showFailure(status);
    } else {
      showProgress(status);
      delay = Math.min(1500, delay + 100);
      setTimeout(poll, delay);
    }
  }

  poll();
})();
