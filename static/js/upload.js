// Home page: drag-and-drop or pick a file, check size and type here, upload with progress.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("file");
  const zone = document.getElementById("drop-zone");
  const nameBox = document.getElementById("file-name");
  const errorBox = document.getElementById("upload-error");
  const bar = document.getElementById("upload-progress");
  const button = document.getElementById("upload-submit");
  const maxBytes = parseInt(form.dataset.maxBytes, 10);

  // The first bytes say what a file is; names and MIME types can lie.
  function sniff(bytes) {
    const b = bytes;
    const ascii = (start, end) => String.fromCharCode.apply(null, b.slice(start, end));
    if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image";
    if (b[0] === 0x89 && ascii(1, 4) === "PNG") return "image";
    if (ascii(0, 4) === "GIF8") return "image";
    if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image";
    if (ascii(0, 2) === "BM") return "image";
    if (ascii(0, 4) === "II*\u0000" || ascii(0, 4) === "MM\u0000*") return "image";
    if (ascii(4, 8) === "ftyp") {
      // still pictures in an ISO-BMFF box (as detector/media.py judges them): AVIF, HEIF/HEIC
      const brand = ascii(8, 12);
      const compatible = ascii(16, Math.min(b.length, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]));
      if (brand === "avif" || brand === "avis") return "image";
      if ((brand === "mif1" || brand === "msf1") && /avi[fs]/.test(compatible)) return "image";
      if (["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"].includes(brand)) return "image";
      return "video";
    }
    if (b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) return "video";
    if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "AVI ") return "video";
    return null;
  }

  async function check(file) {
    if (!file) return "choose a photo or video first";
    if (file.size === 0) return "the file is empty";
    if (file.size > maxBytes) {
      return "the file is " + (file.size / 1048576).toFixed(0) + " MB; the limit is " + (maxBytes / 1048576).toFixed(0) + " MB";
    }
    const head = new Uint8Array(await file.slice(0, 64).arrayBuffer());
    if (!sniff(head)) return "this is not a photo or video we can read";
    return null;
  }

  // 812 bytes, 14 KB, 3.2 MB: a small photo is not "0.0 MB".
  function size(bytes) {
    if (bytes < 1024) return bytes + (bytes === 1 ? " byte" : " bytes");
    if (bytes < 1048576) return Math.round(bytes / 1024) + " KB";
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function show(file) {
    nameBox.textContent = file ? file.name + " (" + size(file.size) + ")" : "";
    errorBox.textContent = "";
  }

  input.addEventListener("change", () => show(input.files[0]));
  ["dragenter", "dragover"].forEach((ev) =>
    zone.addEventListener(ev, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    })
  );
  ["dragleave", "drop"].forEach((ev) => zone.addEventListener(ev, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      show(input.files[0]);
    }
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = input.files[0];
    const problem = await check(file);
    if (problem) {
      errorBox.textContent = problem;
      return;
    }
    button.disabled = true;
    bar.hidden = false;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", Unmask.csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (p) => {
      if (p.lengthComputable) bar.value = p.loaded / p.total;
    });
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (err) {
        body = null;
      }
      if (xhr.status === 202 && body && body.page_url) {
        window.location.assign(body.page_url);
        return;
      }
      button.disabled = false;
      bar.hidden = true;
      errorBox.textContent = Unmask.errorMessage(body, "the upload failed (" + xhr.status + ")");
    };
    xhr.onerror = () => {
      button.disabled = false;
      bar.hidden = true;
      errorBox.textContent = "the upload failed: the server could not be reached";
    };
    xhr.send(new FormData(form));
  });
})();
